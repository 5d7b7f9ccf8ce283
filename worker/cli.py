"""``cdn-refresh worker`` and ``quota``: run a worker, and read or set the quota it runs on.

Commands of the worker's, reached through the front door (:mod:`cdn_refresh.cli`). Celery and
the app are imported when ``worker`` runs, so listing the commands stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import click

from cdn_refresh.cli_support import command_settings, emit, redis_settings
from cdn_refresh.operations import OPERATIONS, ObjectType

F = TypeVar("F", bound=Callable[..., None])


def _limit_dest(name: ObjectType) -> str:
    """The parameter name of an operation's ``--set-…-quota`` option (``set_url_quota``)."""
    return OPERATIONS[name].set_quota_option.removeprefix("--").replace("-", "_")


def _limit_options(command: F) -> F:
    """One ``--set-…-quota`` option per operation, as its row names it."""
    for name, op in reversed(list(OPERATIONS.items())):
        command = click.option(
            op.set_quota_option,
            _limit_dest(name),
            type=click.IntRange(min=0),
            help=f"Change the {op.label} limit every worker's quota runs on, then restart "
            f"them with the same CDN_REFRESH_{op.quota_setting}.",
        )(command)
    return command


def _valid_window(
    _ctx: click.Context, _param: click.Parameter, value: float | None
) -> float | None:
    """Refuse, as bad input (exit 2), a window no worker could count on: nan, inf, or out of
    the sane range (click's FloatRange lets nan through: every comparison with it is false)."""
    from cdn_refresh.store.quota import window_problem

    problem = None if value is None else window_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--set-window",
    "set_window_s",
    type=float,
    callback=_valid_window,
    help="Change the rolling window (s, 60 to 604800) every worker's quota runs on, then "
    "restart them with the same CDN_REFRESH_QUOTA_WINDOW_S.",
)
@_limit_options
def quota(as_json: bool, set_window_s: float | None, **set_limits: int | None) -> None:
    """Show the rolling-window quota: limit, used and remaining per type."""
    from cdn_refresh.documents import quota_document
    from cdn_refresh.store import Store

    store = Store.from_settings(redis_settings())
    if set_window_s is not None:
        previous = store.quota.set_window(set_window_s)
        click.echo(f"quota window: {previous or 'unset'} -> {set_window_s:g} s", err=True)
    for kind in OPERATIONS:
        limit = set_limits[_limit_dest(kind)]
        if limit is not None:
            was = store.quota.set_limit(kind, limit)
            click.echo(
                f"{kind.label} quota limit: {was if was is not None else 'unset'} -> {limit}",
                err=True,
            )
    unusable = store.quota.unusable_window()
    if unusable is not None:
        store.close()
        click.echo(f"error: {unusable}", err=True)
        sys.exit(1)
    data = quota_document(store)  # the API's GET /v1/quota answers the same document
    store.close()
    text = "\n".join(
        f"{name:<13} limit={d['limit']} used={d['used']} remaining={d['remaining']} "
        f"pending={d['pending']} cooling={d['cooling']}"
        + (
            f" provider_remaining={d['provider']['remaining']}/{d['provider']['limit']}"
            if d["provider"]
            else ""
        )
        for name, d in data.items()
    )
    emit(data, as_json, text)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker with the periodic scheduler embedded (extra args go to Celery).

    With several workers, run the scheduler once: `celery -A worker beat` on its own and
    `celery -A worker worker` for the rest.
    """
    from worker.app import create_app

    settings = command_settings()
    app = create_app(settings)
    argv = ["worker", "--beat", "--loglevel", settings.log.level.upper(), *celery_args]
    app.worker_main(argv)
