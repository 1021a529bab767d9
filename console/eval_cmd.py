"""`casegate eval recommender`: measure the baseline recommender on anyone's case history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

out = Console()
err = Console(stderr=True, soft_wrap=True)
app = typer.Typer(help="Measure casegate's recommenders offline.", no_args_is_help=True)

JsonlFile = Annotated[
    Path,
    typer.Option(
        exists=True, dir_okay=False, help="JSON Lines of case events (the contract's JSON form)"
    ),
]


@app.command("recommender")
def recommender(
    history: JsonlFile,
    cases: JsonlFile,
    policy: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="policy whose model-visible fields apply (default: policy/default.yaml)",
        ),
    ] = None,
) -> None:
    """Replay HISTORY, recommend for each case of CASES, and score category accuracy and
    next-action hit rate against the majority-class baseline, per category."""
    from console.produce import InvalidFile, read_events
    from policy.loader import load_policy_file
    from processors.recommend.evaluate import evaluate

    try:
        past, present = read_events(history), read_events(cases)
    except InvalidFile as exc:
        for e in exc.errors[:20]:
            err.print(f"line {e.line}: {e.message}")
        err.print(f"[red]error:[/] {exc}; fix the lines above.")
        raise typer.Exit(2) from None
    with out.status(f"replaying {len(past)} history events, scoring {len(present)} events…"):
        report = evaluate(past, present, policy=load_policy_file(policy) if policy else None)
    table = Table(
        Column("category", no_wrap=True),
        "cases",
        "accuracy",
        "majority",
        "with action",
        "hit rate",
        "majority",
        title=f"baseline recommender on {cases.name} "
        f"({report.history_cases} resolved cases learned)",
    )
    for name, s in [*report.per_category.items(), ("ALL", report.overall)]:
        table.add_row(
            name,
            str(s.cases),
            f"{s.accuracy:.3f}",
            f"{s.majority_accuracy:.3f}",
            str(s.action_cases),
            f"{s.hit_rate:.3f}",
            f"{s.majority_hit_rate:.3f}",
            style="bold" if name == "ALL" else None,
        )
    out.print(table)
    out.print(
        f"majority class: {report.majority_category}; majority action: "
        f"{report.majority_action}; unlabelled cases (not scored): {report.unlabelled}"
    )
