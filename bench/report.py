"""The bench's output: a table on the terminal and the same figures as JSON under results/."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.measure import FLAT_BYTES_PER_UNIT, Figures, Target, Trend
from infra.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    # Small ratios keep three significant digits (0.00 would say nothing).
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _growth(worst: float, per: str) -> str:
    if math.isnan(worst):
        return "too short to tell"
    return f"{worst:+,.0f} B/{per} (worst run)"


def verdict(met: bool | None) -> str:
    """A target's status in words: a miss is said plainly, never hidden."""
    return "not measured" if met is None else "met" if met else "missed"


def verdicts(
    ratios: dict[str, float], targets: Sequence[Target], memory: dict[str, Trend]
) -> list[tuple[str, str, str, bool | None]]:
    """(name, value, target, met) for every target; met is None when it was not measured
    (a phase left out with ``--phases``, say)."""
    rows: list[tuple[str, str, str, bool | None]] = []
    for t in targets:
        value = ratios[t.name]
        rows.append(
            (
                t.name,
                _fmt(value),
                f"{t.op} {t.limit:g}",
                None if math.isnan(value) else t.met(value),
            )
        )
    for name, trend in memory.items():
        rows.append(
            (
                f"memory {name} flat after warm-up",
                _growth(trend.worst, trend.per),
                f"<= {FLAT_BYTES_PER_UNIT} B/{trend.per}",
                trend.flat,
            )
        )
    return rows


def write_report(
    out: Console,
    figures: Figures,
    ratios: dict[str, float],
    targets: Sequence[Target],
    memory: dict[str, Trend],
    params: dict[str, object],
    path: Path | None = None,
) -> Path:
    table = Table("figure", "median", "min", "max", "unit", "runs", title="measured")
    for f in figures.values():
        table.add_row(
            f.name, _fmt(f.median), _fmt(min(f.runs)), _fmt(max(f.runs)), f.unit, str(len(f.runs))
        )
    out.print(table)

    rows = verdicts(ratios, targets, memory)
    table = Table("ratio / figure", "value", "target", "verdict", title="targets (same run)")
    for name, value, goal, met in rows:
        shown = verdict(met)
        table.add_row(name, value, goal, shown if met else f"[bold red]{shown}[/]")
    out.print(table)
    missed = [name for name, _, _, met in rows if met is False]
    unmeasured = [name for name, _, _, met in rows if met is None]
    if missed:
        out.print(f"[bold red]targets missed:[/] {', '.join(missed)} — see docs/performance.md")
    if unmeasured:
        out.print(f"[yellow]targets not measured:[/] {', '.join(unmeasured)}")
    if not missed and not unmeasured:
        out.print("[bold green]every target met[/]")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    quick = bool(params.get("quick"))
    path = path or RESULTS / f"bench-{stamp}{'-quick' if quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "date": stamp,
                "command": " ".join(["python -m bench", *sys.argv[1:]]),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_avg_at_end": os.getloadavg(),
                },
                "parameters": params,
                "figures": {k: f.as_dict() for k, f in figures.items()},
                "ratios": ratios,
                "targets": {
                    t.name: {"op": t.op, "limit": t.limit, "met": met}
                    for t, (_, _, _, met) in zip(targets, rows, strict=False)
                },
                "memory": {name: trend.as_dict() for name, trend in memory.items()},
                "targets_missed": missed,
                "targets_not_measured": unmeasured,
            },
            indent=2,
        )
    )
    out.print(f"results written to {path}")
    return path


def markdown(path: Path) -> str:
    """A results JSON as the markdown tables docs/performance.md quotes
    (``python -m bench.report results/bench-….json``)."""
    data = json.loads(path.read_text())
    lines = [
        "| figure | median | min | max | unit | runs |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for f in data["figures"].values():
        lines.append(
            f"| `{f['name']}` | {_fmt(f['median'])} | {_fmt(f['min'])} | "
            f"{_fmt(f['max'])} | {f['unit']} | {len(f['runs'])} |"
        )
    lines += ["", "| ratio / figure | value | target | verdict |", "| --- | ---: | --- | --- |"]
    for name, t in data["targets"].items():
        lines.append(
            f"| {name} | {_fmt(data['ratios'][name])} | {t['op']} {t['limit']:g} | "
            f"{verdict(t['met'])} |"
        )
    for name, m in data["memory"].items():
        # Rebuilt from the runs, so results written before "worst" was stored read too.
        growth = _growth(Trend(m["per"], m["units"], m["bytes_per_unit"]).worst, m["per"])
        lines.append(
            f"| memory {name} flat after warm-up | {growth} | "
            f"<= {m['limit_bytes_per_unit']} B/{m['per']} | {verdict(m['flat'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(Path(sys.argv[1])))
