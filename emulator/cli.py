"""``cdn-refresh emulator`` (also ``python -m emulator``): run the emulator until a signal.

Prints one ready line, flushed, once the port is bound, so a parent process can wait for it:
``emulator listening on http://HOST:PORT``, or with ``--json`` ``{"host", "port", "url"}``.
The secret is never printed.
"""

from __future__ import annotations

import json
import sys

import click

from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer, serve


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
@click.option(
    "--url-quota",
    type=click.IntRange(min=0),
    default=EmulatorConfig().url_quota,
    show_default=True,
    help="Daily URL refresh quota.",
)
@click.option(
    "--dir-quota",
    type=click.IntRange(min=0),
    default=EmulatorConfig().dir_quota,
    show_default=True,
    help="Daily directory refresh quota.",
)
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
    help="Share of refresh calls answered 500 InternalError.",
)
@click.option(
    "--throttle-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of refresh calls answered 503 Throttling.",
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
    help="Share of refresh calls whose connection is closed unanswered.",
)
@click.option(
    "--drop-after-accept-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of refresh calls accepted, then closed unanswered.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Delay before answering a refresh call.",
)
@click.option("--seed", type=int, default=None, help="Seed of the fault sequence.")
@click.option(
    "--complete-after-s",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds until a task shows Complete.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ready line as JSON.")
def emulator_command(
    host: str,
    port: int,
    access_key_id: str,
    access_key_secret: str,
    url_quota: int,
    dir_quota: int,
    known_domains: tuple[str, ...],
    offline_domains: tuple[str, ...],
    unknown_domains: tuple[str, ...],
    internal_error_rate: float,
    throttle_rate: float,
    throttle_retry_after_ms: int,
    drop_rate: float,
    drop_after_accept_rate: float,
    latency_ms: float,
    seed: int | None,
    complete_after_s: float,
    as_json: bool,
) -> None:
    """Run a local Alibaba Cloud CDN emulator (RPC API 2018-05-10) until SIGINT/SIGTERM."""
    if internal_error_rate + throttle_rate + drop_rate > 1:
        raise click.UsageError("--internal-error-rate + --throttle-rate + --drop-rate > 1")
    if not access_key_id or not access_key_secret:
        raise click.UsageError("--access-key-id and --access-key-secret must not be empty")
    config = EmulatorConfig(
        credentials={access_key_id: access_key_secret},
        url_quota=url_quota,
        dir_quota=dir_quota,
        known_domains=frozenset(known_domains),
        offline_domains=frozenset(offline_domains),
        unknown_domains=frozenset(unknown_domains),
        internal_error_rate=internal_error_rate,
        throttle_rate=throttle_rate,
        throttle_retry_after_ms=throttle_retry_after_ms,
        drop_rate=drop_rate,
        drop_after_accept_rate=drop_after_accept_rate,
        latency_s=latency_ms / 1000,
        seed=seed,
        complete_after_s=complete_after_s,
    )

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
