"""The one table of states (cdn_refresh/store/states.py): the Lua scripts spell no state, every
job count a script moves is a move the table allows, and the job state follows its precedence."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
import redis

from cdn_refresh.store import scripts, states
from cdn_refresh.store.keys import SharedKeys, TypeKeys
from cdn_refresh.store.records import JobCounts
from cdn_refresh.store.states import JobState, PathState

_NAMES = {v.value for e in (PathState, JobState, states.Release) for v in e}
_LONG_OPEN = re.compile(r"\[(=*)\[")
_FUNCTION = re.compile(r"local function (\w+)\(([^)]*)\)")
_CONSTANT = re.compile(r"\b(STATE|RELEASE)\.(\w+)")
STRING = "__string__"


def _lex(text: str) -> tuple[str, list[str]]:
    """The code without its comments and with each string literal replaced by ``STRING``;
    and the literals."""
    code: list[str] = []
    literals: list[str] = []
    i = 0
    while i < len(text):
        long = _LONG_OPEN.match(text, i + 2) if text.startswith("--", i) else None
        if long:  # --[[ a long comment ]]
            i = text.index("]" + long.group(1) + "]", long.end()) + len(long.group(0))
        elif text.startswith("--", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
        elif text[i] in "'\"":
            j = i + 1
            while text[j] != text[i]:
                j += 2 if text[j] == "\\" else 1
            literals.append(text[i + 1 : j])
            code.append(STRING)
            i = j + 1
        elif long := _LONG_OPEN.match(text, i):
            end = text.index("]" + long.group(1) + "]", long.end())
            literals.append(text[long.end() : end])
            code.append(STRING)
            i = end + len(long.group(0))
        else:
            code.append(text[i])
            i += 1
    return "".join(code), literals


def _calls(code: str, name: str) -> list[tuple[int, list[str]]]:
    """Each call of ``name`` in ``code`` (not its definition): where, and its arguments."""
    found = []
    for match in re.finditer(rf"(?<![\w.]){name}\(", code):
        if code[max(0, match.start() - 15) : match.start()].endswith("function "):
            continue
        depth, args, arg = 1, [], ""
        for ch in code[match.end() :]:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 or (ch == "," and depth == 1):
                args.append(arg.strip())
                arg = ""
                if depth == 0:
                    break
            else:
                arg += ch
        found.append((match.start(), args))
    return found


def _state(arg: str) -> PathState | None:
    """``STATE.X`` as its state; ``nil`` as None; anything else fails the test."""
    if arg == "nil":
        return None
    match = re.fullmatch(r"STATE\.(\w+)", arg)
    assert match, f"a job count moved by {arg!r}: name the state, STATE.X"
    return PathState[match.group(1)]


def _helpers(prelude: str) -> dict[str, tuple[int, set[PathState]]]:
    """Prelude functions that move a job's count from a state their caller names: the
    parameter's position, and the states they move it to."""
    helpers: dict[str, tuple[int, set[PathState]]] = {}
    for at, args in _calls(prelude, "count_move"):
        if args[2] in ("nil",) or args[2].startswith("STATE."):
            continue
        name, params = _FUNCTION.findall(prelude[:at])[-1]
        names = [p.strip() for p in params.split(",")]
        assert args[2] in names, f"count_move from {args[2]!r}, not a parameter of {name}"
        position, targets = helpers.get(name, (names.index(args[2]), set()))
        target = _state(args[3])
        helpers[name] = (position, targets | ({target} if target else set()))
    return helpers


def _moves_in_scripts() -> set[tuple[PathState, PathState, str]]:
    """Every (from, to, script) a script moves a job's count along."""
    prelude, _ = _lex(scripts.prelude())
    helpers = _helpers(prelude)
    moves = set()
    for spec in scripts.ALL:
        code, _ = _lex(scripts.source(spec))
        for _, args in _calls(code, "count_move"):
            source, target = _state(args[2]), _state(args[3])
            assert target is not None, f"{spec.file}: a count moved to nowhere"
            # From nothing: a path the job has just asked for.
            moves.add((source or PathState.UNKNOWN, target, spec.file))
        for helper, (position, targets) in helpers.items():
            for _, args in _calls(code, helper):
                source = _state(args[position])
                assert source is not None
                moves |= {(source, target, spec.file) for target in targets}
    return moves


def _every_script() -> list[tuple[str, str]]:
    return [(s.file, scripts.source(s)) for s in scripts.ALL] + [
        (scripts.PRELUDE, scripts.prelude())
    ]


@pytest.mark.parametrize(("name", "text"), _every_script(), ids=[n for n, _ in _every_script()])
def test_no_lua_script_spells_a_state_name(name: str, text: str) -> None:
    _, literals = _lex(text)
    spelled = [s for s in literals if set(re.findall(r"[a-z_]+", s)) & _NAMES]
    assert spelled == [], f"{name} spells a state: use STATE.X or RELEASE.X"


def test_every_state_constant_a_script_names_is_in_the_generated_table() -> None:
    tables = {
        "STATE": {s.name for s in states.COUNTED_STATES},
        "RELEASE": {r.name for r in states.Release},
    }
    for name, text in _every_script():
        code, _ = _lex(text)
        for table, key in _CONSTANT.findall(code):
            assert key in tables[table], f"{name}: {table}.{key} is nil in Lua"


def test_every_job_count_a_script_moves_is_a_move_the_table_allows_and_names() -> None:
    found = _moves_in_scripts()
    declared = {(m.source, m.target, script) for m in states.MOVES for script in m.scripts}
    assert found == declared
    assert {(s, t) for s, t, _ in found} <= states.ALLOWED


def test_the_move_track_makes_from_submitted_to_failed_is_in_the_table() -> None:
    assert (PathState.SUBMITTED, PathState.FAILED, "track.lua") in _moves_in_scripts()


def test_no_worker_script_moves_a_path_out_of_a_final_state() -> None:
    leaving = {script for s, _, script in _moves_in_scripts() if s in states.FINAL_STATES}
    assert leaving <= {"replay.lua"}  # only an operator's replay


def test_a_lua_literal_or_an_unlisted_move_is_caught() -> None:
    code, literals = _lex("count_move(c, j, STATE.PENDING, 'in_flight', 1) -- 'pending'")
    assert literals == ["in_flight"]
    with pytest.raises(AssertionError, match="name the state"):
        _state(_calls(code, "count_move")[0][1][3])
    assert (PathState.COMPLETE, PathState.IN_FLIGHT) not in states.ALLOWED


def test_job_counts_has_one_field_per_counted_state_in_the_stored_order() -> None:
    assert tuple(f.name for f in fields(JobCounts)) == states.JOB_COUNT_STATES
    assert states.JOB_COUNT_STATES == ("pending", "in_flight", "submitted", "failed", "complete")
    assert JobCounts(pending=2, in_flight=3, submitted=9).waiting == 5


def test_lookup_order_names_keys_of_the_layout() -> None:
    layout = {f.name for kind in (TypeKeys, SharedKeys) for f in fields(kind)}
    for _, keys in states.LOOKUP_ORDER:
        assert set(keys) <= layout


def _job(streaming: bool = False, incomplete: bool = False, **counts: int) -> tuple[JobState, str]:
    by_state = {PathState(k): v for k, v in counts.items()}
    state = states.job_state(by_state, streaming=streaming, incomplete=incomplete)
    return state, state.value


def test_a_job_state_follows_the_precedence_once_nothing_waits() -> None:
    assert _job(pending=3)[0] is JobState.PENDING
    assert _job(streaming=True)[0] is JobState.PENDING
    assert _job(pending=1, complete=1)[0] is JobState.IN_PROGRESS
    assert _job(streaming=True, failed=1)[0] is JobState.IN_PROGRESS
    assert _job(incomplete=True, failed=1, complete=2)[0] is JobState.INCOMPLETE
    assert _job(failed=1, submitted=1, complete=1)[0] is JobState.FAILED
    assert _job(submitted=1, complete=4)[0] is JobState.SUBMITTED
    assert _job(complete=4)[0] is JobState.COMPLETE
    assert _job()[0] is JobState.COMPLETE  # every path rejected


def test_the_generated_constants_hold_the_stored_names_inside_redis(
    redis_client: redis.Redis,
) -> None:
    body = "return {STATE.PENDING, STATE.IN_FLIGHT, STATE.SUBMITTED, STATE.FAILED, "
    body += "STATE.COMPLETE, RELEASE.RETRY, RELEASE.REQUEUE, RELEASE.FAILED}"
    answer = redis_client.eval(scripts.shared() + body, 0)
    assert answer == [*states.JOB_COUNT_STATES, "retry", "requeue", "failed"]
