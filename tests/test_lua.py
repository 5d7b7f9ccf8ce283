"""Lua you can read: scripts short enough to read at once (claim a short main over named
sections), and arguments taken by name, in the order their spec binds them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdn_refresh.store import scripts

LUA = Path(scripts.__file__).parent / "lua"
MAX_LUA_LINES = 150
MAX_CLAIM_MAIN_LINES = 79
# Scripts not yet split into sections, each held to its size today so that none grows.
LONGER_TODAY: dict[str, int] = {}
# Scripts that still take positional ARGV (a fixed head, then a list of paths; their spec
# names no args yet): none may join.
POSITIONAL_TODAY: set[str] = set()
# A header line names one argument, converted at most once: ``local now = clock(ARGV[1])``.
_ARG_LINE = re.compile(r"^local (\w+) = (?:[\w.]+\()?ARGV\[(\d+)\]\)?(?=\s|$)", re.MULTILINE)
# The list after the named head, where the spec names one (its ``trailing``), bound by one
# header line right after the head: ``local paths = trailing_list(ARGV, 5)``.
_LIST_LINE = re.compile(r"^local (\w+) = \w+\(ARGV, (\d+)\)(?=\s|$)", re.MULTILINE)


def _lines(name: str) -> int:
    return len((LUA / name).read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("path", sorted(LUA.glob("*.lua")), ids=lambda p: p.name)
def test_no_lua_script_is_longer_than_150_lines_or_than_it_is_today(path: Path) -> None:
    ceiling = LONGER_TODAY.get(path.name, MAX_LUA_LINES)
    assert _lines(path.name) <= ceiling


def test_a_script_that_is_short_now_leaves_the_list_of_long_ones() -> None:
    assert {n for n, ceiling in LONGER_TODAY.items() if _lines(n) <= MAX_LUA_LINES} == set()


def test_claim_is_a_short_main_over_named_sections() -> None:
    assert _lines(scripts.CLAIM.file) <= MAX_CLAIM_MAIN_LINES
    sections = "\n".join(scripts.source(scripts.CLAIM).split("\n")[: -_lines("claim.lua")])
    for section in (
        "evict_window",
        "our_room",
        "provider_room",
        "release_cooled",
        "directory_wait",
        "pack",
        "take_paths",
        "reserve",
    ):
        assert f"local function {section}(" in sections
        assert f"{section}(" in scripts.main(scripts.CLAIM)


@pytest.mark.parametrize("spec", scripts.ALL, ids=lambda s: s.file)
def test_each_script_names_its_arguments_in_the_order_python_binds_them(
    spec: scripts.ScriptSpec,
) -> None:
    if spec.file in POSITIONAL_TODAY:
        # Positional until its spec names its arguments: then it leaves the list.
        assert spec.args == ()
        return
    text = scripts.source(spec)
    named = _ARG_LINE.findall(text)
    assert [name for name, _ in named] == list(spec.args)
    assert [int(n) for _, n in named] == list(range(1, len(spec.args) + 1))
    # Past the header, no script indexes ARGV by number.
    assert "ARGV[" not in _ARG_LINE.sub("", text)


@pytest.mark.parametrize("spec", scripts.ALL, ids=lambda s: s.file)
def test_a_list_follows_the_named_arguments_only_where_the_spec_names_it(
    spec: scripts.ScriptSpec,
) -> None:
    if spec.file in POSITIONAL_TODAY:
        return
    main = scripts.main(spec).splitlines()
    heads = [i for i, line in enumerate(main) if _ARG_LINE.match(line)]
    lists = [i for i, line in enumerate(main) if _LIST_LINE.match(line)]
    if spec.trailing is None:
        assert lists == []
    else:
        # One line, right after the head, binds the spec's name from the position after it.
        assert len(lists) == 1 and (not heads or lists[0] == heads[-1] + 1)
        bound = _LIST_LINE.match(main[lists[0]])
        assert bound is not None
        assert bound.groups() == (spec.trailing, str(len(spec.args) + 1))
    # Nothing else reads ARGV (no ``#ARGV``, no ``unpack(ARGV, ...)``), comments aside.
    code = re.sub(r"--.*", "", _LIST_LINE.sub("", _ARG_LINE.sub("", scripts.source(spec))))
    assert re.search(r"\bARGV\b", code) is None


def test_a_list_is_given_by_its_name_and_bound_after_the_named_head() -> None:
    spec = scripts.SUBMIT
    head = dict(zip(spec.args, "abcd", strict=True))
    assert scripts.bind_args(spec, {**head, "paths": ("p", "q")}) == [*"abcd", "p", "q"]
    with pytest.raises(ValueError, match="missing"):
        scripts.bind_args(spec, head)
    with pytest.raises(ValueError, match="unknown"):
        scripts.bind_args(scripts.CLAIM, {**dict.fromkeys(scripts.CLAIM.args, "1"), "paths": ()})


def test_a_script_bound_by_name_refuses_a_missing_or_unknown_argument() -> None:
    args = dict.fromkeys(scripts.CLAIM.args, "1")
    assert scripts.bind_args(scripts.CLAIM, args) == ["1"] * len(scripts.CLAIM.args)
    with pytest.raises(ValueError, match="missing"):
        scripts.bind_args(scripts.CLAIM, {k: v for k, v in args.items() if k != "now"})
    with pytest.raises(ValueError, match="unknown"):
        scripts.bind_args(scripts.CLAIM, {**args, "nwo": "1"})
