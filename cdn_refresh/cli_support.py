"""What every ``cdn-refresh`` command shares, wherever it lives: settings, a Redis that
answers, input files, and how a document is printed.

The commands themselves live with the package that owns them (``producer.cli``,
``worker.cli``, ...); this module is on the floor so that each of them can use it.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from cdn_refresh.constants import OBJECT_TYPES, ObjectType
from cdn_refresh.settings import Settings, SettingsError, load_settings
from cdn_refresh.times import TIME_KEYS, shown_time

EXIT_BAD_INPUT = 2
TYPE_CHOICE = click.Choice([t.label for t in OBJECT_TYPES], case_sensitive=False)
# How long a command waits for Redis before it says it cannot reach it.
REDIS_PREFLIGHT_TIMEOUT_S = 1.5


def object_type(value: str) -> ObjectType:
    return ObjectType.parse(value)


def command_settings() -> Settings:
    """The settings, or a one-line error naming what is wrong with them."""
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def redis_settings() -> Settings:
    """The settings, once Redis answers: an unreachable Redis fails the command in under
    2 s, naming the setting (never its value: the URL may hold a password)."""
    import redis

    from cdn_refresh.store import redis_from_settings

    settings = command_settings()
    client = redis_from_settings(
        settings.redis,
        retries=0,
        connect_timeout_s=REDIS_PREFLIGHT_TIMEOUT_S,
        socket_timeout_s=REDIS_PREFLIGHT_TIMEOUT_S,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        # redis-py's messages name the host and port, never the password.
        raise click.ClickException(
            f"cannot reach Redis at CDN_REFRESH_REDIS_URL: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        client.close()
    return settings


def emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, sort_keys=False) if as_json else text)


def read_lines(source: str) -> Iterator[str]:
    """Lines of a file ('-' for standard input), split on \n (or \r\n) and nothing else.

    Text mode would also end a line at a lone \r, turning one line into two paths; here a
    stray \r stays in its line and validation rejects it, with the right line number. Bytes
    that are not UTF-8 survive as surrogates and are rejected the same way. A line too long
    to be valid is never held whole (see cdn_refresh.lines).
    """
    from cdn_refresh.lines import read_lines as split_lines

    binary: IO[bytes] = sys.stdin.buffer if source == "-" else _open_input(source)
    with binary:
        yield from split_lines(binary)


def _open_input(source: str) -> IO[bytes]:
    """``source`` opened for reading, or a one-line error and exit 2 (bad input)."""
    try:
        return open(source, "rb")
    except OSError as exc:
        click.echo(f"error: cannot read {source}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def check_input(source: str | None) -> None:
    """Fail before anything is written when ``--from-file`` cannot be read.

    Looked at, never opened: a named pipe opened and closed here would end its writer (a
    broken pipe) and leave the real read waiting for one that never comes."""
    if source is None or source == "-":
        return
    try:
        problem = "Is a directory" if stat.S_ISDIR(os.stat(source).st_mode) else None
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem is None and not os.access(source, os.R_OK):
        problem = "Permission denied"
    if problem is not None:
        click.echo(f"error: cannot read {source}: {problem}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def shown(key: str, value: Any) -> str:
    """One field of a document as a person reads it: times local, a place in words."""
    if value is None:
        return "-"
    if key in TIME_KEYS:
        return shown_time(float(value))
    if key == "place":
        when = value["estimated_at"]
        if value["fits_now"]:
            estimate = "now: the quota window has room"
        else:
            estimate = "never (quota 0)" if when is None else shown_time(float(when))
        return f"{value['ahead']:,} path(s) ahead; expected to go {estimate}"
    return str(value)
