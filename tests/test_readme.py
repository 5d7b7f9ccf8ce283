"""The README's and the docs' examples agree with each other and with the code: what an example
looks up is what an example enqueued (the same normalized path and type), and every link
between them leads to a file that is there."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cdn_refresh.constants import ObjectType
from cdn_refresh.paths import normalize_path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _shell_blocks() -> list[str]:
    return [
        block
        for page in (README, *DOCS)
        for block in re.findall(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    ]


def _commands() -> list[list[str]]:
    """Each shell example as words, continuation lines joined, comments dropped."""
    found = []
    for block in _shell_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(words)
    return found


def _enqueued() -> set[tuple[str, ObjectType]]:
    """Every path an example enqueues (CLI ``enqueue`` or ``POST /v1/refresh``), normalized."""
    found = set()
    for words in _commands():
        if words[:2] == ["cdn-refresh", "enqueue"]:
            typed = "--type" in words
            kind = ObjectType.parse(words[words.index("--type") + 1]) if typed else ObjectType.FILE
            paths = [w for w in words[2:] if "." in w and not w.startswith("-") and "/" in w]
            found |= {(normalize_path(p, kind), kind) for p in paths}
        if words[0] == "curl" and "-d" in words and any("/v1/refresh" in w for w in words):
            body = json.loads(words[words.index("-d") + 1])
            kind = ObjectType.parse(body.get("type", "file"))
            found |= {(normalize_path(p, kind), kind) for p in body["paths"]}
    return found


def _looked_up() -> list[tuple[str, ObjectType]]:
    """Every path an example looks up (CLI ``lookup`` or ``GET /v1/lookup``), normalized."""
    found = []
    for words in _commands():
        if words[:2] == ["cdn-refresh", "lookup"]:
            found.append((normalize_path(words[2], ObjectType.FILE), ObjectType.FILE))
        for word in words:
            if "/v1/lookup?" in word:
                query = parse_qs(urlsplit(word).query)
                kind = ObjectType.parse(query.get("type", ["file"])[0])
                found.append((normalize_path(query["path"][0], kind), kind))
    return found


def test_every_path_an_example_looks_up_is_one_an_example_enqueued() -> None:
    looked_up = _looked_up()
    assert len(looked_up) >= 2  # the CLI's and the API's examples are both read
    enqueued = _enqueued()
    assert [p for p in looked_up if p not in enqueued] == []


def test_every_link_between_the_readme_and_the_docs_leads_somewhere() -> None:
    broken = []
    for page in (README, *DOCS):
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if not (page.parent / target).is_file():
                broken.append(f"{page.name} -> {target}")
    assert broken == []


def test_the_readme_is_read_in_ten_minutes() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200
