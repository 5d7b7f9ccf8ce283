"""``cdn-refresh emulator`` (also ``python -m emulator``): run the emulator until a signal.

Prints one ready line, flushed, once the port is bound, so a parent process can wait for it:
``emulator listening on http://HOST:PORT``, or with ``--json`` ``{"host", "port", "url"}``.
The secret is never printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from emulator.actions import ACTIONS
from emulator.config import ALL_ACTIONS, REFRESH_ACTION, EmulatorConfig
from emulator.quota import COUNTERS
from emulator.server import EmulatorServer, serve


def _parse_rate_limits(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, int]:
    limits: dict[str, int] = {}
    for value in values:
        action, _, count = value.partition("=")
        if not action or not (count.isascii() and count.isdigit()) or int(count) < 1:
            raise click.BadParameter(f"{value!r} is not ACTION=N with N >= 1", ctx, param)
        limits[action] = int(count)
    return limits


_DEFAULTS = EmulatorConfig()


def _option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _counter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--KIND-quota`` and ``--KIND-spent-elsewhere`` for every daily counter of the table
    (``--url-quota``, ``--regex-quota``, ``--preload-quota``, ...)."""
    for counter in reversed(tuple(COUNTERS.values())):
        command = click.option(
            _option_name(counter.spent_elsewhere),
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help=f"Today's {counter.what} already used by someone else on the account.",
        )(command)
        command = click.option(
            _option_name(counter.quota),
            type=click.IntRange(min=0),
            default=getattr(_DEFAULTS, counter.quota),
            show_default=True,
            help=f"Daily quota of {counter.what}.",
        )(command)
    return command


# Per-call and queue limits: (config field, help).
_LIMITS = (
    ("urls_per_call", "URLs a RefreshObjectCaches call may carry."),
    ("directories_per_call", "Directories a RefreshObjectCaches call may carry."),
    ("regexes_per_call", "Regular expressions a RefreshObjectCaches call may carry."),
    ("ignore_params_per_call", "IgnoreParams URLs a call may carry (no figure documented)."),
    ("domains_per_call", "Distinct domains a refresh call may name."),
    ("preload_per_call", "URLs a PushObjectCache call may carry."),
    ("preload_queue_limit", "Unfinished preload URLs an account may queue (403 PreloadQueueFull)."),
)


def _limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for field, help_text in reversed(_LIMITS):
        command = click.option(
            _option_name(field),
            type=click.IntRange(min=1),
            default=getattr(_DEFAULTS, field),
            show_default=True,
            help=help_text,
        )(command)
    return command


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8800,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind; 0 picks a free one.",
)
@click.option(
    "--access-key-id",
    default="testid",
    show_default=True,
    envvar="CDN_REFRESH_ACCESS_KEY_ID",
    help="The one AccessKeyId accepted.",
)
@click.option(
    "--access-key-secret",
    default="testsecret",
    envvar="CDN_REFRESH_ACCESS_KEY_SECRET",
    help="Its secret (default testsecret).",
)
@_counter_options
@_limit_options
@click.option(
    "--known-domain",
    "known_domains",
    multiple=True,
    help="A domain the account serves (repeat); none given means every domain.",
)
@click.option(
    "--offline-domain",
    "offline_domains",
    multiple=True,
    help="A domain answered with InvalidDomain.Offline (repeat).",
)
@click.option(
    "--unknown-domain",
    "unknown_domains",
    multiple=True,
    help="A domain answered with InvalidDomain.NotFound (repeat).",
)
@click.option(
    "--internal-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of calls (to the --fault-action actions) answered 500 InternalError.",
)
@click.option(
    "--throttle-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of calls (to the --fault-action actions) answered 503 Throttling.",
)
@click.option(
    "--throttle-retry-after-ms",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="x-acs-retry-after sent with Throttling.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of calls (to the --fault-action actions) closed unanswered.",
)
@click.option(
    "--drop-after-accept-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of calls (to the --fault-action actions) accepted, then closed unanswered.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Delay before answering a call to a --fault-action action.",
)
@click.option("--seed", type=int, default=None, help="Seed of the fault sequence.")
@click.option(
    "--complete-after-s",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds until a task shows Complete (or Failed).",
)
@click.option(
    "--task-failure-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of tasks that end Failed instead of Complete (drawn from --seed).",
)
@click.option(
    "--calls-per-s",
    "calls_per_s",
    multiple=True,
    callback=_parse_rate_limits,
    metavar="ACTION=N",
    help="Answer Throttling past N calls a second to ACTION (repeat), e.g. "
    "DescribeRefreshTasks=5. Default: no limit.",
)
@click.option(
    "--fault-action",
    "fault_actions",
    multiple=True,
    type=click.Choice([*ACTIONS, ALL_ACTIONS]),
    default=(REFRESH_ACTION,),
    show_default=True,
    help="An action the fault rates and latency apply to (repeat; '*' for every action).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ready line as JSON.")
def emulator_command(
    host: str,
    port: int,
    access_key_id: str,
    access_key_secret: str,
    latency_ms: float,
    as_json: bool,
    **settings: Any,
) -> None:
    """Run a local Alibaba Cloud CDN emulator (RPC API 2018-05-10) until SIGINT/SIGTERM."""
    # The other options are EmulatorConfig fields of the same name, checked by the model.
    if settings["internal_error_rate"] + settings["throttle_rate"] + settings["drop_rate"] > 1:
        raise click.UsageError("--internal-error-rate + --throttle-rate + --drop-rate > 1")
    if not access_key_id or not access_key_secret:
        raise click.UsageError("--access-key-id and --access-key-secret must not be empty")
    try:
        config = EmulatorConfig.model_validate(
            {
                **settings,
                "credentials": {access_key_id: access_key_secret},
                "latency_s": latency_ms / 1000,
            }
        )
    except ValidationError as exc:
        # Without the inputs: the credentials are among them.
        raise click.UsageError(str(exc.errors(include_input=False, include_url=False))) from None

    def ready(server: EmulatorServer) -> None:
        if as_json:
            line = json.dumps({"host": server.host, "port": server.port, "url": server.url})
        else:
            line = f"emulator listening on {server.url}"
        # Flushed at once: a parent process reading a pipe waits for this line.
        click.echo(line)
        sys.stdout.flush()

    try:
        serve(config, host, port, on_ready=ready)
    except OSError as exc:
        # Port taken or address not local: say so without a traceback.
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


@click.command(
    "emulator",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("emulator_args", nargs=-1, type=click.UNPROCESSED)
def front_door_command(emulator_args: tuple[str, ...]) -> None:
    """Run the provider emulator on loopback (`cdn-refresh emulator --help` for its options)."""
    # Every argument passed through, --help too: the command above parses them, and answers
    # as `cdn-refresh emulator` the same as `python -m emulator`.
    emulator_command.main(list(emulator_args), prog_name="cdn-refresh emulator")
