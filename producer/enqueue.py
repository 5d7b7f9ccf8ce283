"""The two passes of an enqueue, and the streaming under the second.

The first pass normalizes every input into a spool (memory until it grows, then a temp file);
the second streams the spool into Redis in pipelined chunks, two pipelines in flight so that
this process packs one while Redis runs the other (``bench/`` measures both passes).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

import redis

from cdn_refresh.beat import Beat
from cdn_refresh.constants import ObjectType
from cdn_refresh.paths import InvalidPathError, normalize_path, shown_path
from cdn_refresh.store.jobs import OPEN_JOB_BEAT_S, ChunksRefusedError, JobStore
from cdn_refresh.store.records import JobHeader
from producer.receipts import EnqueueInterruptedError, Receipt, Rejection

# Paths per enqueue script call, and script calls per pipeline round trip.
CHUNK_PATHS = 2_000
CHUNKS_PER_PIPELINE = 4
# Pipelines in flight at once during a large enqueue (one connection and thread each).
PIPELINES_IN_FLIGHT = 2
# Spool in memory up to this size, then on disk: a million paths never sit in a list.
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
SPOOL_READ_CHARS = 1024 * 1024
# Rejections listed one by one at most; beyond this only the count grows.
MAX_LISTED_REJECTIONS = 10_000
PROGRESS_EVERY = 10_000


def validate(
    paths: Iterable[str],
    object_type: ObjectType,
    allowed: frozenset[str],
    receipt: Receipt,
    spool: IO[str],
    progress: Callable[[str, int], None] | None,
) -> int:
    """First pass: normalize ``paths`` into ``spool``, one a line; refusals go to ``receipt``.
    Returns how many paths are valid."""
    valid = 0
    # Normalized paths go to the spool a block at a time: one write per path would cost
    # as much as the normalization of the common, already canonical path.
    block: list[str] = []
    line = 0
    for line, raw in enumerate(paths, start=1):
        try:
            block.append(normalize_path(raw, object_type, allowed))
        except InvalidPathError as exc:
            receipt.rejected_count += 1
            if len(receipt.rejected) < MAX_LISTED_REJECTIONS:
                receipt.rejected.append(Rejection(line, shown_path(raw), exc.reason))
        if line % PROGRESS_EVERY == 0:
            valid += _spill(block, spool)
            if progress is not None:
                progress("validated", PROGRESS_EVERY)
    valid += _spill(block, spool)
    if progress is not None and line % PROGRESS_EVERY:
        progress("validated", line % PROGRESS_EVERY)
    return valid


def write(
    jobs: JobStore,
    spool: IO[str],
    header: JobHeader,
    receipt: Receipt,
    progress: Callable[[str, int], None] | None,
    base: tuple[int, int] = (0, 0),
) -> None:
    """Second pass: stream the spool in as ``header``'s job; ``base``: the (accepted,
    duplicates) it had before (a resumed job's)."""
    receipt.job_id = header.job_id
    rank = JobStore.rank(header.created_at, header.priority)
    jobs.open(header)

    refused: list[list[tuple[int, int]]] = []

    def send(group: list[list[str]]) -> list[tuple[int, int]]:
        try:
            return jobs.enqueue_chunks(header, rank, group)
        except ChunksRefusedError as exc:
            refused.append(exc.done)  # what the refused pipeline took still counts
            raise

    def tally(group: list[list[str]], answers: list[tuple[int, int]], in_order: bool) -> None:
        for accepted, duplicates in answers:
            receipt.accepted += accepted
            receipt.duplicates += duplicates
        # Progress says how many of the first valid paths are in (a retry resumes after
        # them): a group that went in after a refused one is counted, never reported.
        if progress is not None and in_order:
            progress("enqueued", sum(len(chunk) for chunk in group))

    # The job stays open while this enqueue lives, however long a round trip takes.
    beat = Beat(lambda: jobs.renew(header), OPEN_JOB_BEAT_S, f"job-open-{header.job_id}")
    try:
        with beat:
            _stream(_grouped(_chunks(spool, CHUNK_PATHS), CHUNKS_PER_PIPELINE), send, tally)
    except redis.RedisError as exc:
        for done in refused:
            receipt.accepted += sum(a for a, _ in done)
            receipt.duplicates += sum(d for _, d in done)
        header.accepted = base[0] + receipt.accepted
        header.duplicates = base[1] + receipt.duplicates
        header.error = f"{type(exc).__name__}: {exc}"[:500]
        jobs.abandon(header)
        receipt.incomplete, receipt.error = True, header.error
        raise EnqueueInterruptedError(receipt, exc) from exc
    header.accepted = base[0] + receipt.accepted
    header.duplicates = base[1] + receipt.duplicates
    jobs.close(header)


def _stream(
    groups: Iterator[list[list[str]]],
    send: Callable[[list[list[str]]], list[tuple[int, int]]],
    tally: Callable[[list[list[str]], list[tuple[int, int]], bool], None],
) -> None:
    """Send every group, several pipelines in flight at once when there is more than one.

    Each in-flight pipeline runs on its own connection: while Redis runs the scripts of one,
    this process packs the next, and neither side waits for the other.
    """
    first = next(groups)
    second = next(groups, None)
    if second is None:
        tally(first, send(first), True)
        return
    window: deque[tuple[list[list[str]], Future[list[tuple[int, int]]]]] = deque()

    def tally_oldest(in_order: bool = True) -> None:
        group, future = window.popleft()
        tally(group, future.result(), in_order)

    with ThreadPoolExecutor(PIPELINES_IN_FLIGHT, thread_name_prefix="enqueue") as pool:
        try:
            for group in itertools.chain((first, second), groups):
                if len(window) >= PIPELINES_IN_FLIGHT:
                    tally_oldest()
                window.append((group, pool.submit(send, group)))
            while window:
                tally_oldest()
        except redis.RedisError:
            # The other pipeline in flight may have gone in: count it, so that the receipt
            # of a failed enqueue says exactly what was accepted.
            while window:
                with contextlib.suppress(redis.RedisError):
                    tally_oldest(in_order=False)
            raise


def _spill(block: list[str], spool: IO[str]) -> int:
    """Write ``block`` to the spool, one path a line, and empty it; returns its length."""
    count = len(block)
    if count:
        block.append("")  # the last line's newline
        spool.write("\n".join(block))
        block.clear()
    return count


def _chunks(spool: IO[str], size: int) -> Iterator[list[str]]:
    """The spool's lines, ``size`` at a time, read in large blocks."""
    chunk: list[str] = []
    tail = ""
    while block := spool.read(SPOOL_READ_CHARS):
        lines = (tail + block).split("\n")
        tail = lines.pop()
        start = 0
        while len(chunk) + len(lines) - start >= size:
            end = start + size - len(chunk)
            chunk.extend(lines[start:end])
            yield chunk
            chunk = []
            start = end
        chunk.extend(lines[start:])
    if tail:
        chunk.append(tail)
    if chunk:
        yield chunk


def _grouped(chunks: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    group: list[list[str]] = []
    for chunk in chunks:
        group.append(chunk)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group
