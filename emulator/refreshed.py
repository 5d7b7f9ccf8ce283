"""Whether a path was refreshed, and by which accepted call: the answer of
``POST /_emulator/refreshed``.

A sent path reaches a served one the way its type's row says (``reach`` in
:data:`emulator.operations.REFRESH_TYPES`): as itself, under a directory, matched by a regular
expression, or as the same path whatever its query. Both sides compare as the CDN serves them
(:func:`emulator.paths.served_as`): ``/x/../a`` is ``/a``, under no ``/x/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from emulator.operations import REFRESH_ACTION, REFRESH_TYPES, Reach
from emulator.paths import served_as

_SCHEME = re.compile(r"^https?://", re.IGNORECASE)


def _host_and_rest(path: str) -> tuple[str, str]:
    host, slash, rest = _SCHEME.sub("", path).partition("/")
    return host.lower(), slash + rest


def _under(sent: str, path: str) -> bool:
    return sent != path and path.split("?", 1)[0].startswith(sent)


def _matches(sent: str, path: str) -> bool:
    # The expression is the part after the host; the host itself is a plain name.
    sent_host, pattern = _host_and_rest(sent)
    host, rest = _host_and_rest(path)
    try:
        return sent_host == host and re.fullmatch(pattern, rest) is not None
    except re.error:
        return False


def _same_but_query(sent: str, path: str) -> bool:
    return sent != path and sent.split("?", 1)[0] == path.split("?", 1)[0]


# What, besides naming the path itself, a sent path of each reach refreshes.
_REACHES: Mapping[Reach, Callable[[str, str], bool]] = {
    "itself": lambda sent, path: False,
    "directory": _under,
    "regex": _matches,
    "ignore_params": _same_but_query,
}


def _candidates(path: str, calls: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every ``(how, sent path, call)`` that refreshed ``path``."""
    found = []
    for call in calls:
        reach = REFRESH_TYPES[call["object_type"]].reach
        for text in call["paths"]:
            sent = served_as(text)
            # A regular expression is never "itself": it names what it matches.
            if sent == path and reach != "regex":
                found.append(("itself", sent, call))
            elif _REACHES[reach](sent, path):
                found.append((reach, sent, call))
    return found


def refreshed(paths: list[str], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each of ``paths``, whether one of the accepted ``calls`` refreshed it; the latest
    such call is the one shown (the CDN serves from the latest refresh of any kind)."""
    refresh_calls = [c for c in calls if c["action"] == REFRESH_ACTION]
    answers = []
    for asked in paths:
        candidates = _candidates(served_as(asked), refresh_calls)
        if not candidates:
            answers.append({"path": asked, "refreshed": False, "how": None})
            continue
        how, by, call = max(candidates, key=lambda c: (c[2]["call"], c[0] == "itself"))
        answers.append(
            {
                "path": asked,
                "refreshed": True,
                "how": how,
                "directory": by if how == "directory" else None,
                "by": by,
                "at": call["time"],
                "call": call["call"],
                "task_ids": list(call["task_ids"]),
            }
        )
    return answers
