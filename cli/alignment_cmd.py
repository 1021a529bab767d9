"""`casegate alignment`: how often the recommendations matched what operators finally did,
per workflow and phase (the `shadow_alignment` read model) — the evidence a shadow
workflow gathers before it is promoted."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from infra.settings import Settings

out = Console()


def alignment() -> None:
    """Category and action match rates of resolved cases against their latest
    recommendation, per workflow and phase (cases out of scope: workflow —)."""
    from cli.readside_cmd import _connect
    from console.api.reads import alignment_by_workflow_phase

    with _connect(Settings()) as conn:
        rows = alignment_by_workflow_phase(conn)
    table = Table(
        "workflow",
        "phase",
        "compared",
        "category match",
        "with action",
        "action match",
        title="shadow alignment: recommendations against what operators did",
    )

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.1%}"

    for r in sorted(rows, key=lambda r: (str(r["workflow"]), str(r["phase"]))):
        table.add_row(
            r["workflow"] or "—",
            r["phase"] or "—",
            str(r["compared"]),
            pct(r["category_match_rate"]),
            str(r["with_action"]),
            pct(r["action_match_rate"]),
        )
    out.print(table)
    if not rows:
        out.print("no resolved case with a recommendation yet: produce cases, let them resolve.")
