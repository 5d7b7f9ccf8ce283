"""The producer's streaming of chunk groups: what a failed enqueue reports as in, and where a
retry may resume (only after paths that are all in, in order)."""

from __future__ import annotations

import pytest
import redis

from producer import enqueue


def test_a_group_that_went_in_after_a_refused_one_is_counted_but_not_reported_in_order() -> None:
    groups = [[["a"]], [["b1"], ["b2"]], [["c"]]]
    tallied: list[tuple[str, bool]] = []

    def send(group: list[list[str]]) -> list[tuple[int, int]]:
        if group[0] == ["b1"]:
            raise redis.ResponseError("OOM command not allowed")
        return [(len(chunk), 0) for chunk in group]

    def tally(group: list[list[str]], answers: list[tuple[int, int]], in_order: bool) -> None:
        tallied.append((group[0][0], in_order))

    with pytest.raises(redis.RedisError):
        enqueue._stream(iter(groups), send, tally)
    # "c" went in and counts for the receipt; a retry must still resume before "b1".
    assert tallied == [("a", True), ("c", False)]
