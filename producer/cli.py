"""``cdn-refresh enqueue`` and ``status``: put paths in as a job, and follow it (``--wait``).

Commands of the producer's, reached through the front door (:mod:`cdn_refresh.cli`). The
producer itself is imported when a command runs, so listing the commands stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import click

from cdn_refresh.cli_support import (
    EXIT_BAD_INPUT,
    TYPE_CHOICE,
    check_input,
    emit,
    object_type,
    read_lines,
    redis_settings,
    shown,
)
from cdn_refresh.settings import Settings
from cdn_refresh.times import shown_time

if TYPE_CHECKING:
    from producer.producer import (
        EnqueueInterruptedError,
        EnqueueRejectedError,
        Producer,
        Receipt,
    )

EXIT_INTERRUPTED = 1


def make_producer(settings: Settings, *, notify: bool = True) -> Producer:
    from producer.producer import Producer

    return Producer.from_settings(settings, notify_workers=notify)


@click.command()
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
    check_input(from_file)
    settings = redis_settings()
    kind = object_type(type_)

    def inputs() -> Iterator[str]:
        yield from paths
        if from_file is not None:
            yield from read_lines(from_file)

    show_progress = from_file is not None and not as_json and sys.stderr.isatty()
    producer = make_producer(settings)
    try:
        receipt = producer.enqueue(
            inputs(),
            kind,
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
        emit(receipt.to_dict(), as_json, _receipt_text(receipt))
    if wait and receipt.job_id:
        _wait_for(make_producer(settings, notify=False), receipt.job_id, timeout_s, as_json)


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
    emit(data, as_json, _status_text(data))
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
    ends = producer.task_ends(data["task_ids"])
    if not data["task_ids"] or len(ends) < len(data["task_ids"]):
        return []
    return [t for t, end in ends.items() if end.status not in ("Complete", "Failed")]


@click.command()
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

    producer = make_producer(redis_settings(), notify=False)
    try:
        data = producer.status(job_id).to_dict()
        if wait:
            _wait_for(producer, job_id, timeout_s, as_json)
    except JobNotFoundError:
        raise click.ClickException(f"no job {job_id}") from None
    emit(data, as_json, _status_text(data))


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
        text += f"\nlast pending path: {shown('place', data['place'])}"
    if data["last_error"]:
        text += f"\nlast error: {data['last_error']}"
    if data.get("incomplete"):
        text += f"\nincomplete: {data['error']}"
    return text
