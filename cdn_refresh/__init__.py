"""Code shared by the producer, the worker and the emulator.

Kept small on purpose: settings, the path model, the Redis key layout, the provider's
constants and the RPC request signature. This is the floor: nothing here imports
``producer``, ``worker``, ``api``, ``emulator`` or ``sandbox`` (an import-linter contract and
``tests/test_layout.py`` hold this); the ``cdn-refresh`` group in :mod:`cdn_refresh.cli` names
their commands and loads them by name when asked for.
"""

__version__ = "0.1.0"
