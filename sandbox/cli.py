"""``cdn-refresh demo``, reached through the front door (:mod:`cdn_refresh.cli`)."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary at the end.")
@click.option("--timeout", "timeout_s", type=float, default=180, show_default=True)
def demo(as_json: bool, timeout_s: float) -> None:
    """Run the whole pipeline locally on embedded defaults and show what happens."""
    from sandbox.demo import run_demo

    sys.exit(run_demo(as_json=as_json, timeout_s=timeout_s))
