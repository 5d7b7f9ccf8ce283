"""The ``cdn-refresh`` command: a thin layer over the producer, the worker and the emulator.

The front door: subcommands import the wings (producer, worker, emulator) when they run, so
``cdn-refresh --help`` stays fast and importing this module loads none of them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from cdn_refresh.constants import API_HOST, API_PORT, OBJECT_TYPES, ObjectType
from cdn_refresh.settings import Settings, SettingsError, load_settings
from cdn_refresh.times import TIME_KEYS, shown_time

if TYPE_CHECKING:
    from producer.producer import (
        EnqueueInterruptedError,
        EnqueueRejectedError,
        Producer,
        Receipt,
    )

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 1
EXIT_UNKNOWN = 1  # lookup: a path never seen
TYPE_CHOICE = click.Choice([t.label for t in OBJECT_TYPES], case_sensitive=False)


def _object_type(value: str) -> ObjectType:
    return ObjectType.parse(value)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


# How long a command waits for Redis before it says it cannot reach it.
REDIS_PREFLIGHT_TIMEOUT_S = 1.5


def _redis_settings() -> Settings:
    """The settings, once Redis answers: an unreachable Redis fails the command in under
    2 s, naming the setting (never its value: the URL may hold a password)."""
    import redis

    from cdn_refresh.store import redis_from_settings

    settings = _settings()
    client = redis_from_settings(
        settings,
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


def _producer(settings: Settings, *, notify: bool = True) -> Producer:
    from producer.producer import Producer

    return Producer.from_settings(settings, notify_workers=notify)


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, sort_keys=False) if as_json else text)


class _Main(click.Group):
    """The command group; a Redis that cannot be reached is a clear one-line error."""

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


def _read_lines(source: str) -> Iterator[str]:
    """Lines of a file ('-' for standard input), split on \n (or \r\n) and nothing else.

    Text mode would also end a line at a lone \r, turning one line into two paths; here a
    stray \r stays in its line and validation rejects it, with the right line number. Bytes
    that are not UTF-8 survive as surrogates and are rejected the same way. A line too long
    to be valid is never held whole (see cdn_refresh.lines).
    """
    from cdn_refresh.lines import read_lines

    binary: IO[bytes] = sys.stdin.buffer if source == "-" else _open_input(source)
    with binary:
        yield from read_lines(binary)


def _open_input(source: str) -> IO[bytes]:
    """``source`` opened for reading, or a one-line error and exit 2 (bad input)."""
    try:
        return open(source, "rb")
    except OSError as exc:
        click.echo(f"error: cannot read {source}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def _check_input(source: str | None) -> None:
    """Fail before anything is written when ``--from-file`` cannot be read."""
    if source is not None and source != "-":
        _open_input(source).close()


@main.command()
@click.argument("paths", nargs=-1)
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Read paths, one per line, from FILE ('-' for standard input).",
)
@click.option("--type", "type_", type=TYPE_CHOICE, default="file", show_default=True)
@click.option(
    "--priority",
    type=click.Choice(["interactive", "bulk"]),
    default="interactive",
    show_default=True,
    help="Bulk work leaves the interactive reserve of the quota alone.",
)
@click.option("--skip-invalid", is_flag=True, help="Enqueue the valid paths, list the others.")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
@click.option(
    "--wait",
    is_flag=True,
    help="Then block until every path is complete (exit 0) or failed (1); --json prints the "
    "final status instead of the receipt.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help="With --wait: exit 124 after S seconds.",
)
def enqueue(
    paths: tuple[str, ...],
    from_file: str | None,
    type_: str,
    priority: str,
    skip_invalid: bool,
    as_json: bool,
    wait: bool,
    timeout_s: float | None,
) -> None:
    """Enqueue PATHS (and/or a file of paths) as one job.

    Without --skip-invalid, one invalid path rejects the request: exit code 2, nothing
    enqueued.
    """
    from producer.producer import (
        EnqueueInterruptedError,
        EnqueueRejectedError,
        RedisEvictsError,
        RedisRefusesWritesError,
    )

    if not paths and from_file is None:
        raise click.UsageError("give PATHS or --from-file")
    _check_input(from_file)
    settings = _redis_settings()
    object_type = _object_type(type_)

    def inputs() -> Iterator[str]:
        yield from paths
        if from_file is not None:
            yield from _read_lines(from_file)

    show_progress = from_file is not None and not as_json and sys.stderr.isatty()
    producer = _producer(settings)
    try:
        receipt = producer.enqueue(
            inputs(),
            object_type,
            priority,
            skip_invalid=skip_invalid,
            progress=_ProgressLine() if show_progress else None,
        )
    except EnqueueRejectedError as exc:
        _exit_rejected(exc, as_json)
    except EnqueueInterruptedError as exc:
        _exit_interrupted(exc, as_json)
    except (RedisRefusesWritesError, RedisEvictsError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        producer.close()
    if not (wait and as_json):
        _emit(receipt.to_dict(), as_json, _receipt_text(receipt))
    if wait and receipt.job_id:
        _wait_for(_producer(settings, notify=False), receipt.job_id, timeout_s, as_json)


def _receipt_text(receipt: Receipt) -> str:
    text = (
        f"job {receipt.job_id or '-'}: {receipt.accepted} accepted, "
        f"{receipt.duplicates} duplicate(s), {receipt.rejected_count} rejected"
    )
    for r in receipt.rejected[:20]:
        text += f"\n  rejected line {r.line}: {r.reason}: {r.path!r}"
    if receipt.warning:
        text += f"\nwarning: {receipt.warning}"
    return text


def _exit_rejected(exc: EnqueueRejectedError, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps(exc.receipt.to_dict()))
    else:
        click.echo(f"error: {exc}", err=True)
        for r in exc.receipt.rejected[:20]:
            click.echo(f"  line {r.line}: {r.reason}: {r.path!r}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _exit_interrupted(exc: EnqueueInterruptedError, as_json: bool) -> NoReturn:
    # Say what went in: those paths go out, and the job ends as incomplete.
    if as_json:
        click.echo(json.dumps(exc.receipt.to_dict()))
    click.echo(f"error: {exc}", err=True)
    click.echo(
        f"job {exc.receipt.job_id}: {exc.receipt.accepted} path(s) accepted before the "
        "failure; the job is closed as incomplete (enqueue the rest again)",
        err=True,
    )
    sys.exit(EXIT_INTERRUPTED)


class _ProgressLine:
    """A one-line progress display on a terminal: paths validated, then enqueued."""

    def __init__(self) -> None:
        self.counts = {"validated": 0, "enqueued": 0}
        self._last = 0.0

    def __call__(self, phase: str, n: int) -> None:
        c = self.counts
        c[phase] += n
        now = time.monotonic()
        done = phase == "enqueued" and c["enqueued"] >= c["validated"]
        if done or now - self._last >= 0.1:
            self._last = now
            click.echo(
                f"\rvalidated {c['validated']:,}  enqueued {c['enqueued']:,}", nl=False, err=True
            )
        if done:
            click.echo(err=True)


# `--wait`: exit codes a deploy script can branch on (124 is timeout(1)'s).
EXIT_COMPLETE, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 124
WAIT_POLL_S = 0.5
WAIT_REPORT_S = 5.0  # without a terminal: a progress line this often
BAR_WIDTH = 30


def wait_bar(counts: dict[str, int]) -> str:
    """``[###===    ] complete=3 submitted=3 waiting=4 failed=0 of 10``: ``#`` complete (or
    failed), ``=`` submitted (the provider has it, the task runs), blank still waiting."""
    total = sum(counts.values()) or 1
    ended = counts["complete"] + counts["failed"]
    done = BAR_WIDTH * ended // total
    sent = BAR_WIDTH * (ended + counts["submitted"]) // total - done
    bar = "#" * done + "=" * sent
    return (
        f"[{bar:<{BAR_WIDTH}}] complete={counts['complete']:,} "
        f"submitted={counts['submitted']:,} waiting={counts['pending'] + counts['in_flight']:,} "
        f"failed={counts['failed']:,} of {sum(counts.values()):,}"
    )


def _wait_for(producer: Producer, job_id: str, timeout_s: float | None, as_json: bool) -> NoReturn:
    """Block until the job is complete (exit 0), failed or incomplete (1), or ``timeout_s``
    (124)."""
    started = time.monotonic()
    deadline = None if timeout_s is None else started + timeout_s
    tty = not as_json and sys.stderr.isatty()
    reported = -WAIT_REPORT_S
    while True:
        data = producer.status(job_id).to_dict()
        now = time.monotonic()
        if tty:
            click.echo("\r" + wait_bar(data["counts"]), nl=False, err=True)
        elif not as_json and now - reported >= WAIT_REPORT_S:
            reported = now
            click.echo(f"job {job_id}: {data['state']} {wait_bar(data['counts'])}", err=True)
        state = data["state"]
        timed_out = deadline is not None and now >= deadline
        unconfirmed = _given_up(producer, data) if state == "submitted" else []
        if state in ("complete", "failed", "incomplete") or unconfirmed or timed_out:
            if tty:
                click.echo(err=True)
            _end_wait(data, as_json, unconfirmed, timed_out, now - started)
        time.sleep(WAIT_POLL_S)


def _end_wait(
    data: dict[str, Any], as_json: bool, unconfirmed: list[str], timed_out: bool, waited: float
) -> NoReturn:
    _emit(data, as_json, _status_text(data))
    if unconfirmed:
        click.echo(
            f"tracking gave up on task(s) {', '.join(unconfirmed)} (still running "
            "after TASK_TIMEOUT_S, or unknown to the provider): not confirmed",
            err=True,
        )
    if data["state"] == "complete":
        sys.exit(EXIT_COMPLETE)
    if timed_out and not unconfirmed and data["state"] not in ("failed", "incomplete"):
        click.echo(
            f"timed out after {waited:.0f} s: job {data['job_id']} is {data['state']}, "
            "not complete (exit 124)",
            err=True,
        )
        sys.exit(EXIT_TIMEOUT)
    sys.exit(EXIT_FAILED)


def _given_up(producer: Producer, data: dict[str, Any]) -> list[str]:
    """A job done (every path submitted) whose every task ended, some given up rather than
    Complete: it will never be complete, and a wait must not last for ever."""
    ends = producer.store.tracking.ends(data["task_ids"])
    if not data["task_ids"] or len(ends) < len(data["task_ids"]):
        return []
    return [t for t, end in ends.items() if end.status not in ("Complete", "Failed")]


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--wait", is_flag=True, help="Block until every path is complete (exit 0) or failed (1)."
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help="With --wait: give up after S seconds (exit 124).",
)
def status(job_id: str, as_json: bool, wait: bool, timeout_s: float | None) -> None:
    """Show a job's state, its counts by state and its task IDs."""
    from producer.producer import JobNotFoundError

    producer = _producer(_redis_settings(), notify=False)
    try:
        data = producer.status(job_id).to_dict()
        if wait:
            _wait_for(producer, job_id, timeout_s, as_json)
    except JobNotFoundError:
        raise click.ClickException(f"no job {job_id}") from None
    _emit(data, as_json, _status_text(data))


def _status_text(data: dict[str, Any]) -> str:
    c = data["counts"]
    job_id = data["job_id"]
    text = (
        f"job {job_id}: {data['state']}  pending={c['pending']} in_flight={c['in_flight']} "
        f"submitted={c['submitted']} complete={c['complete']} failed={c['failed']}\n"
        f"task ids: {', '.join(data['task_ids']) or '-'}"
    )
    text += f"\ncreated: {shown_time(data['created_at'])}"
    if data.get("place"):
        text += f"\nlast pending path: {_shown('place', data['place'])}"
    if data["last_error"]:
        text += f"\nlast error: {data['last_error']}"
    if data.get("incomplete"):
        text += f"\nincomplete: {data['error']}"
    return text


@main.command()
@click.option("--state", "state", default=None, help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def jobs(state: str | None, limit: int, as_json: bool) -> None:
    """List recent jobs, newest first (only those in STATE with --state)."""
    from cdn_refresh.store import Store
    from cdn_refresh.store.records import JobState

    try:
        wanted = JobState(state) if state else None
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise click.BadParameter(f"{state!r} is none of {names}", param_hint="--state") from None
    store = Store.from_settings(_redis_settings())
    try:
        found = [j.to_dict() for j in store.jobs.recent(limit, wanted)]
    finally:
        store.close()
    text = "\n".join(
        f"{j['job_id']:>8}  {j['state']:<11} {j['object_type']:<9} "
        f"paths={sum(j['counts'].values()):,} created {shown_time(j['created_at'])}"
        for j in found
    )
    _emit(found, as_json, text or "no jobs")


@main.command()
@click.argument("path")
@click.option("--type", "type_", type=TYPE_CHOICE, default="file", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def lookup(path: str, type_: str, as_json: bool) -> None:
    """Was PATH refreshed, and under which task?"""
    from cdn_refresh.paths import InvalidPathError

    try:
        data = (
            _producer(_redis_settings(), notify=False).lookup(path, _object_type(type_)).to_dict()
        )
    except InvalidPathError as exc:
        click.echo(f"error: invalid path: {exc.reason}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    _emit(data, as_json, _lookup_text(data))
    if data["state"] == "unknown":
        sys.exit(EXIT_UNKNOWN)


def _lookup_text(data: dict[str, Any]) -> str:
    lines = []
    for key, value in data.items():
        if key == "submissions":
            continue
        lines.append(f"{key}: {_shown(key, value)}")
    lines += [
        f"earlier: task {entry['task_id']} at {shown_time(entry['submitted_at'])}"
        for entry in data["submissions"][1:]
    ]
    return "\n".join(lines)


def _shown(key: str, value: Any) -> str:
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


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--set-window",
    "set_window_s",
    type=float,
    callback=_valid_window,
    help="Change the rolling window (s, 60 to 604800) every worker's quota runs on, then "
    "restart them with the same CDN_REFRESH_QUOTA_WINDOW_S.",
)
@click.option(
    "--set-url-quota",
    "set_url_quota",
    type=click.IntRange(min=0),
    help="Change the URL limit every worker's quota runs on, then restart them with the same "
    "CDN_REFRESH_URL_DAILY_QUOTA.",
)
@click.option(
    "--set-directory-quota",
    "set_directory_quota",
    type=click.IntRange(min=0),
    help="Change the directory limit every worker's quota runs on, then restart them with "
    "the same CDN_REFRESH_DIRECTORY_DAILY_QUOTA.",
)
def quota(
    as_json: bool,
    set_window_s: float | None,
    set_url_quota: int | None,
    set_directory_quota: int | None,
) -> None:
    """Show the rolling-window quota: limit, used and remaining per type."""
    from cdn_refresh.documents import quota_document
    from cdn_refresh.store import Store

    store = Store.from_settings(_redis_settings())
    if set_window_s is not None:
        previous = store.quota.set_window(set_window_s)
        click.echo(f"quota window: {previous or 'unset'} -> {set_window_s:g} s", err=True)
    for kind, limit in (
        (ObjectType.FILE, set_url_quota),
        (ObjectType.DIRECTORY, set_directory_quota),
    ):
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
        f"{name:<10} limit={d['limit']} used={d['used']} remaining={d['remaining']} "
        f"pending={d['pending']} cooling={d['cooling']}"
        + (
            f" provider_remaining={d['provider']['remaining']}/{d['provider']['limit']}"
            if d["provider"]
            else ""
        )
        for name, d in data.items()
    )
    _emit(data, as_json, text)


@main.command()
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Plan these paths too, one per line ('-' for standard input); nothing is enqueued.",
)
@click.option("--type", "type_", type=TYPE_CHOICE, default="file", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def plan(from_file: str | None, type_: str, as_json: bool) -> None:
    """What draining the queue takes: calls and days at the configured quota, without and
    with promotion. Sends nothing and writes nothing."""
    from cdn_refresh.paths import InvalidPathError, normalize_path, shown_path
    from cdn_refresh.planning import Limits, make_plan
    from cdn_refresh.store import Store

    _check_input(from_file)
    settings = _redis_settings()
    extra_type = _object_type(type_)
    paths: dict[ObjectType, set[str]] = {kind: set() for kind in OBJECT_TYPES}
    if from_file is not None:
        refused = []
        for line, raw in enumerate(_read_lines(from_file), start=1):
            try:
                paths[extra_type].add(normalize_path(raw, extra_type, settings.allowed_domains))
            except InvalidPathError as exc:
                refused.append(f"line {line}: {exc.reason}: {shown_path(raw)}")
        if refused:
            click.echo(f"{len(refused)} invalid paths, nothing planned:", err=True)
            click.echo("\n".join(refused[:20]), err=True)
            sys.exit(2)
    store = Store.from_settings(settings)
    try:
        for kind in OBJECT_TYPES:
            paths[kind].update(store.promotion.pending_paths(kind))
            paths[kind].update(store.promotion.cooling_paths(kind))
    finally:
        store.close()
    limits = Limits(
        url_daily_quota=settings.url_daily_quota,
        directory_daily_quota=settings.directory_daily_quota,
        urls_per_call=settings.urls_per_call,
        directories_per_call=settings.directories_per_call,
        domains_per_call=settings.max_domains_per_call,
        interactive_reserve=settings.interactive_reserve,
        promote_min_paths=settings.promote_min_paths,
        promote_min_depth=settings.promote_min_depth,
        allowed_domains=tuple(settings.allowed_domains),
    )
    result = make_plan(
        paths[ObjectType.FILE],
        paths[ObjectType.DIRECTORY],
        limits,
        enabled=settings.promote == "auto",
    )
    _emit(result.to_dict(), as_json, _plan_text(result.to_dict()))


def _plan_text(data: dict[str, Any]) -> str:
    def days(value: float | None) -> str:
        return "never (quota 0)" if value is None else f"{value:g} days"

    lines = [
        f"{kind:<10} pending={data[kind]['pending']} calls={data[kind]['calls']} "
        f"drains in {days(data[kind]['days_to_drain'])}"
        for kind in ("file", "directory")
    ]
    if data["file"]["covered_by_pending_directories"]:
        lines.append(
            f"           {data['file']['covered_by_pending_directories']} files lie under "
            "pending directories and go with them"
        )
    promo = data["promotion"]
    state = "on" if promo["enabled"] else "off (CDN_REFRESH_PROMOTE=auto turns it on)"
    lines.append(
        f"promotion  {state}: {len(promo['directories'])} directories would cover "
        f"{promo['file_paths_covered']} files; drains in {days(promo['days_to_drain'])}"
    )
    lines += [f"           {d}" for d in promo["directories"][:20]]
    return "\n".join(lines)


@main.group("dead-letter")
def dead_letter() -> None:
    """Paths the provider refused, or that ran out of attempts."""


@dead_letter.command("list")
@click.option("--json", "as_json", is_flag=True)
def dead_letter_list(as_json: bool) -> None:
    """List dead-lettered paths with their last error."""
    entries = [e.to_dict() for e in _producer(_redis_settings(), notify=False).dead_letters()]
    if as_json:
        click.echo(json.dumps(entries))
        return
    if not entries:
        click.echo("no dead-lettered paths")
    for e in entries:
        click.echo(f"{e['object_type']:<9} {e['code']:<32} attempts={e['attempts']} {e['path']}")


@dead_letter.command("replay")
@click.argument("paths", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead-lettered path.")
@click.option("--type", "type_", type=TYPE_CHOICE, default=None)
@click.option("--json", "as_json", is_flag=True)
def dead_letter_replay(
    paths: tuple[str, ...], replay_all: bool, type_: str | None, as_json: bool
) -> None:
    """Return dead-lettered paths to pending (and lift a credential hold)."""
    if replay_all == bool(paths):
        raise click.UsageError("give either --all or PATHS")
    from cdn_refresh.paths import InvalidPathError

    producer = _producer(_redis_settings())
    kind = _object_type(type_) if type_ else None
    try:
        count = producer.replay(None if replay_all else list(paths), kind)
    except InvalidPathError as exc:
        click.echo(f"error: invalid path: {exc.reason}; nothing replayed", err=True)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        producer.close()
    _emit({"replayed": count}, as_json, f"replayed {count} path(s)")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker with the periodic scheduler embedded (extra args go to Celery).

    With several workers, run the scheduler once: `celery -A worker beat` on its own and
    `celery -A worker worker` for the rest.
    """
    from worker.app import create_app

    settings = _settings()
    app = create_app(settings)
    argv = ["worker", "--beat", "--loglevel", settings.log_level.upper(), *celery_args]
    app.worker_main(argv)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary at the end.")
@click.option("--timeout", "timeout_s", type=float, default=180, show_default=True)
def demo(as_json: bool, timeout_s: float) -> None:
    """Run the whole pipeline locally on embedded defaults and show what happens."""
    from sandbox.demo import run_demo

    sys.exit(run_demo(as_json=as_json, timeout_s=timeout_s))


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("emulator_args", nargs=-1, type=click.UNPROCESSED)
def emulator(emulator_args: tuple[str, ...]) -> None:
    """Run the provider emulator on loopback (`cdn-refresh emulator --help` for its options)."""
    # Loaded only when asked for: the emulator is a wing of its own, not part of the door.
    from emulator.cli import emulator_command

    emulator_command.main(list(emulator_args), prog_name="cdn-refresh emulator")


@main.command()
@click.option("--host", default=API_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=API_PORT, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the HTTP API (bearer tokens in CDN_REFRESH_API_TOKENS; schema at /openapi.json)."""
    # Loaded only when asked for, like the other wings: FastAPI and uvicorn are not small.
    from api.server import serve

    serve(_settings(), host, port)
