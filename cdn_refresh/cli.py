"""The ``cdn-refresh`` command: a thin group whose commands live with the package that owns
them.

The producer's commands are in :mod:`producer.cli` and :mod:`producer.queue_cli`, the
worker's in :mod:`worker.cli`, ``api`` in :mod:`api.cli`, ``emulator`` in
:mod:`emulator.cli` and ``demo`` in :mod:`sandbox.cli`. Each is named here by where it lives
and imported only when it is run or listed (click's lazy group): importing this module loads
none of those packages, and the floor imports nothing above it.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# Command name -> "module:attribute" of its click command.
COMMANDS = {
    "api": "api.cli:api",
    "dead-letter": "producer.queue_cli:dead_letter",
    "demo": "sandbox.cli:demo",
    "emulator": "emulator.cli:front_door_command",
    "enqueue": "producer.cli:enqueue",
    "jobs": "producer.queue_cli:jobs",
    "lookup": "producer.queue_cli:lookup",
    "plan": "producer.queue_cli:plan",
    "quota": "worker.cli:quota",
    "status": "producer.cli:status",
    "worker": "worker.cli:worker",
}


class _Main(click.Group):
    """The command group: commands loaded by name when asked for; a Redis that cannot be
    reached is a clear one-line error."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = COMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{COMMANDS[cmd_name]} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        import redis

        try:
            return super().invoke(ctx)
        except redis.RedisError as exc:
            # redis-py's messages name the host and port, never the password.
            raise click.ClickException(f"Redis: {type(exc).__name__}: {exc}") from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cdn-refresh")
def main() -> None:
    """Queue Alibaba Cloud CDN refreshes and send them within the provider's limits."""
