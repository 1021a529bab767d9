"""The bench's output: a table on the terminal and the same figures as JSON under results/."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.measure import Figures, Target
from infra.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def write_report(
    out: Console,
    figures: Figures,
    ratios: dict[str, float],
    targets: Sequence[Target],
    memory: dict[str, dict[str, list[float]]],
    params: dict[str, object],
    path: Path | None = None,
) -> Path:
    table = Table("figure", "median", "min", "max", "unit", "runs", title="measured")
    for f in figures.values():
        table.add_row(
            f.name, _fmt(f.median), _fmt(min(f.runs)), _fmt(max(f.runs)), f.unit, str(len(f.runs))
        )
    out.print(table)

    verdicts = Table("ratio / figure", "value", "target", "met", title="targets (same run)")
    met: dict[str, bool] = {}
    for t in targets:
        met[t.name] = t.met(ratios[t.name])
        verdicts.add_row(
            t.name,
            _fmt(ratios[t.name]),
            f"{t.op} {t.limit:g}",
            "yes" if met[t.name] else "[red]NO[/]",
        )
    for name, entry in memory.items():
        flat = all(entry["flat"])
        met[f"memory {name} flat"] = flat
        per_k = max(entry["kb_per_1000_cases"])
        verdicts.add_row(
            f"memory {name} flat after warm-up",
            f"{per_k:+,.0f} kB/1000 cases",
            "< 5 % growth",
            "yes" if flat else "[red]NO[/]",
        )
    out.print(verdicts)
    missed = [name for name, ok in met.items() if not ok]
    if missed:
        out.print(f"[bold red]targets NOT met:[/] {', '.join(missed)} — see docs/performance.md")
    else:
        out.print("[bold green]every target met[/]")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    quick = bool(params.get("quick"))
    path = path or RESULTS / f"bench-{stamp}{'-quick' if quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "date": stamp,
                "command": "make bench" + (" QUICK=1" if quick else ""),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_avg_at_end": os.getloadavg(),
                },
                "parameters": params,
                "figures": {k: f.as_dict() for k, f in figures.items()},
                "ratios": ratios,
                "targets": {
                    t.name: {"op": t.op, "limit": t.limit, "met": met[t.name]} for t in targets
                },
                "memory": {
                    name: {
                        "flat": all(entry["flat"]),
                        "flat_runs": entry["flat"],
                        "kb_per_1000_cases": entry["kb_per_1000_cases"],
                    }
                    for name, entry in memory.items()
                },
                "targets_missed": missed,
            },
            indent=2,
        )
    )
    out.print(f"results written to {path}")
    return path
