"""``python -m cdn_refresh`` is the ``cdn-refresh`` command."""

from cdn_refresh.cli import main

main()
