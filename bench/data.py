"""Realistic input paths, made deterministically (a seeded generator, no files shipped).

A path looks like ``https://cdn07.shop-example.com/static/img/123/00012345-product.jpg``:
20 domains, about 60 characters. Enqueue inputs repeat each unique path once more, a fifth
of the repeats spelled differently (upper-case host, default port, a fragment), and are
shuffled, as a nightly purge list built from several sources would be.
"""

from __future__ import annotations

import random
from pathlib import Path

DOMAINS = 20
SEED = 20240611
_DIRS = ("static/img", "assets/js", "media/video", "static/css", "files/docs")
_NAMES = ("product", "banner", "thumb", "main", "vendor", "poster", "index", "manual")
_EXTS = (".jpg", ".js", ".mp4", ".css", ".pdf", ".png", ".webp", ".html")


def domain(d: int) -> str:
    return f"cdn{d:02d}.shop-example.com"


def unique_paths(count: int, *, domains: int = DOMAINS, offset: int = 0) -> list[str]:
    """``count`` distinct normalized File paths over ``domains`` hosts.

    ``offset`` starts the numbering elsewhere, so that two calls make disjoint sets.
    """
    rng = random.Random(SEED + offset)
    paths = []
    for i in range(offset, offset + count):
        d = i % domains
        k = rng.randrange(len(_DIRS))
        paths.append(
            f"https://{domain(d)}/{_DIRS[k]}/{i % 997:03d}/{i:08d}-"
            f"{_NAMES[rng.randrange(len(_NAMES))]}{_EXTS[k + rng.randrange(4)]}"
        )
    return paths


def respell(path: str, how: int) -> str:
    """Another spelling of a normalized path that normalizes back to it."""
    scheme_end = path.index("://") + 3
    host_end = path.index("/", scheme_end)
    host = path[scheme_end:host_end]
    if how == 0:
        return "HTTPS://" + host.upper() + path[host_end:]
    if how == 1:
        return path[:host_end] + ":443" + path[host_end:]
    return path + "#section"


def enqueue_lines(count: int) -> tuple[list[str], list[str]]:
    """``count`` input lines, half of them repeats, shuffled; and their normalized forms."""
    unique = unique_paths(count // 2)
    rng = random.Random(SEED)
    lines = list(unique)
    normalized = list(unique)
    for i, path in enumerate(unique[: count - len(unique)]):
        lines.append(respell(path, i % 3) if i % 5 == 0 else path)
        normalized.append(path)
    order = list(range(len(lines)))
    rng.shuffle(order)
    return [lines[i] for i in order], [normalized[i] for i in order]


def write_lines(path: Path, lines: list[str]) -> None:
    """One path per line, ``\\n``-terminated, UTF-8."""
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.writelines(line + "\n" for line in lines)
