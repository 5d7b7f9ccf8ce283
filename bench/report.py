"""Results: rows of figures, the console table, and ``bench/RESULTS.md``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
# Figures of the enqueue benchmark measured before the enqueue path was optimized.
BEFORE_JSON = HERE / "before.json"
CHANGES_MD = HERE / "CHANGES.md"


@dataclass
class Row:
    """One figure. ``ratio`` is ``value`` over ``baseline`` (measured in the same run)."""

    metric: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None

    def verdict(self) -> str:
        if self.ok is None:
            return ""
        return "PASS" if self.ok else "MISS"


@dataclass
class Result:
    """What one benchmark measured."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


def fmt(value: float, unit: str) -> str:
    if unit in ("paths/s", "B", "KiB", "calls", "paths", "B/path", "MiB"):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    if unit in ("days", "units"):
        return f"{value:,.2f}"
    if unit in ("s", "ms"):
        return f"{value:,.3f}" if unit == "s" else f"{value:,.0f}"
    return f"{value:,.3g}"


def _table(result: Result) -> list[list[str]]:
    return [
        [
            row.metric,
            f"{fmt(row.value, row.unit)} {row.unit}".strip(),
            row.baseline,
            "" if row.ratio is None else f"{row.ratio:.3f}",
            row.target,
            row.verdict(),
        ]
        for row in result.rows
    ]


HEADER = ["metric", "value", "baseline (same run)", "ratio", "target", ""]


def console_table(results: list[Result]) -> str:
    """A plain-text table of every row of every result."""
    lines: list[str] = []
    for result in results:
        lines.append(f"\n== {result.title} ({result.seconds:.0f} s)")
        if result.error:
            lines.append(f"   ERROR: {result.error}")
        rows = [HEADER, *_table(result)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
        for r in rows:
            lines.append("   " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        lines.extend(f"   - {note}" for note in result.notes)
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out.extend("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows)
    return out


def write_results(
    results: list[Result], machine: dict[str, str], options: dict[str, Any], output: Path
) -> None:
    """Write ``output`` (Markdown) and, beside it, the same figures as JSON."""
    md = [
        "# Benchmark results",
        "",
        "Written by `python -m bench` (`make bench`); every figure below is from that one run.",
        "Each speed is given as a ratio to its floor, measured in the same run on the same",
        "machine, so the ratios are comparable across machines even when the speeds are not.",
        "",
        "## Machine",
        "",
        *(f"- {k}: `{v}`" for k, v in machine.items()),
        f"- options: `{json.dumps(options)}`",
        "",
    ]
    verdicts = [(r.title, row) for r in results for row in r.rows if row.ok is not None]
    md += ["## Targets", ""]
    md += _md_table(
        ["benchmark", "metric", "value", "target", ""],
        [
            [title, row.metric, f"{fmt(row.value, row.unit)} {row.unit}", row.target, row.verdict()]
            if row.ratio is None
            else [title, row.metric, f"{row.ratio:.3f}", row.target, row.verdict()]
            for title, row in verdicts
        ],
    )
    md.append("")
    for result in results:
        md += [f"## {result.title}", "", f"Took {result.seconds:.0f} s.", ""]
        if result.error:
            md += [f"**ERROR**: `{result.error}`", ""]
        md += _md_table(HEADER, _table(result))
        md.append("")
        md.extend(f"- {note}" for note in result.notes)
        if result.notes:
            md.append("")
    before = _before_after(results)
    if before:
        md += before
    if CHANGES_MD.exists():
        md += ["", CHANGES_MD.read_text(encoding="utf-8").strip(), ""]
    output.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    output.with_suffix(".json").write_text(
        json.dumps(
            {"machine": machine, "options": options, "results": [asdict(r) for r in results]},
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )


def _before_after(results: list[Result]) -> list[str]:
    """Enqueue figures of this run beside those recorded before the optimization."""
    enqueue = next((r for r in results if r.name == "enqueue" and r.rows), None)
    if enqueue is None or not BEFORE_JSON.exists():
        return []
    before = json.loads(BEFORE_JSON.read_text(encoding="utf-8"))
    old = {row["metric"]: row for row in before["rows"]}
    rows = []
    for row in enqueue.rows:
        prior = old.get(row.metric)
        if prior is None:
            continue
        rows.append(
            [
                row.metric,
                f"{fmt(prior['value'], prior['unit'])} {prior['unit']}",
                "" if prior["ratio"] is None else f"{prior['ratio']:.3f}",
                f"{fmt(row.value, row.unit)} {row.unit}",
                "" if row.ratio is None else f"{row.ratio:.3f}",
            ]
        )
    return [
        "## Enqueue before and after the optimization",
        "",
        f"Before: {before['note']} This run: the figures above.",
        "",
        *_md_table(["metric", "before", "before ratio", "after (this run)", "after ratio"], rows),
        "",
    ]


def save_before(result: Result, note: str) -> None:
    """Keep this run's enqueue figures as the 'before' of an optimization."""
    BEFORE_JSON.write_text(
        json.dumps({"note": note, "rows": [asdict(r) for r in result.rows]}, indent=1) + "\n",
        encoding="utf-8",
    )
