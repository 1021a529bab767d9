"""`casegate eval recommender`: measure the baseline recommender on anyone's case history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cli.tables import Col, print_fitted

if TYPE_CHECKING:
    from processors.recommend.evaluate import EvalReport
    from schemas.events import Event

out = Console()
err = Console(stderr=True, soft_wrap=True)
app = typer.Typer(help="Measure casegate's recommenders offline.", no_args_is_help=True)

EventFile = Annotated[
    Path,
    typer.Option(
        exists=True,
        dir_okay=False,
        help="case events as JSON Lines (the contract's JSON form), or a labelled CSV "
        "(columns text, category; optional subject, action, queue, channel, priority)",
    ),
]


@app.command("recommender")
def recommender(
    history: EventFile,
    cases: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="the cases to evaluate, in either form of --history (or use --split)",
        ),
    ] = None,
    split: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="evaluate this fraction of HISTORY's cases instead of --cases, chosen by a "
            "hash of the case id (deterministic), learning from the rest",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="policy whose model-visible fields apply (default: policy/default.yaml)",
        ),
    ] = None,
) -> None:
    """Learn HISTORY, fit the baseline, recommend for each labelled case of CASES through
    the processor's own batched planning, and score it: category accuracy and next-action
    hit rate against the majority class, per category, then macro-F1, accuracy and
    coverage at the abstention threshold, top-3 accuracy, similar-case precision@5 and the
    expected calibration error."""
    from cli.produce import InvalidFile
    from policy.loader import load_policy_file
    from processors.recommend.evaluate import after_history, evaluate, split_cases

    if (cases is None) == (split is None):
        err.print("[red]error:[/] give either --cases FILE or --split FRACTION.")
        raise typer.Exit(2)
    try:
        past = _read(history)
        if cases is not None:
            present = _read(cases)
        else:
            past, present = split_cases(past, split or 0.0)
        if (cases or history).suffix.lower() == ".csv":
            # CSV rows have no times: the evaluated ones come after all of history.
            present = after_history(past, present)
    except InvalidFile as exc:
        for e in exc.errors[:20]:
            err.print(f"line {e.line}: {e.message}")
        err.print(f"[red]error:[/] {exc}; fix the lines above.")
        raise typer.Exit(2) from None
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    with out.status(f"learning {len(past)} history events, scoring {len(present)} events…"):
        report = evaluate(past, present, policy=load_policy_file(policy) if policy else None)
    scored = cases.name if cases is not None else f"{split:.0%} of {history.name}"
    _warn_about_catalog(report)
    cols = [
        Col("category", justify="left"),
        Col("cases"),
        Col("accuracy", "acc", "category accuracy"),
        Col("majority", "m.acc", "accuracy of the majority class"),
        Col("acted", meaning="cases where humans took an action"),
        Col("hit rate", "hit", "hits / acted (shadow_alignment.action_hit_rate)"),
        Col("majority", "m.hit", "hit rate of the majority cataloged action"),
        Col("recommended", "rec", "cases with a recommended action"),
        Col("match rate", "match", "hits / recommended (shadow_alignment.action_match_rate)"),
    ]
    scores = [*report.per_category.items(), ("ALL", report.overall)]
    print_fitted(
        out,
        cols,
        [
            (
                name,
                str(s.cases),
                f"{s.accuracy:.3f}",
                f"{s.majority_accuracy:.3f}",
                str(s.action_cases),
                f"{s.hit_rate:.3f}",
                f"{s.majority_hit_rate:.3f}",
                str(s.recommended),
                f"{s.match_rate:.3f}",
            )
            for name, s in scores
        ],
        title=f"baseline recommender on {scored} "
        f"({report.history_cases} labelled cases learned, model {report.model_version})",
        styles=["bold" if name == "ALL" else None for name, _ in scores],
    )
    out.print(
        "hit: the recommended action is among the case's actions_taken (one definition, "
        "as in shadow_alignment)",
        highlight=False,
    )
    q = report.quality
    out.print(
        f"macro-F1 {q.macro_f1:.3f}; at the abstention threshold: accuracy "
        f"{q.accuracy_at_threshold:.3f}, coverage {q.coverage:.3f}; top-3 accuracy "
        f"{q.top3_accuracy:.3f}; similar-case precision@5 {q.precision_at_5:.3f}; "
        f"expected calibration error {q.ece:.3f}"
    )
    out.print(
        f"majority class: {report.majority_category}; majority action: "
        f"{report.majority_action}; unlabelled cases (not scored): {report.unlabelled}"
    )


# Below this share of history's action names in the catalog, hit rates say more about
# the catalog than about the recommender.
FEW_CATALOGED = 0.5


def _warn_about_catalog(report: EvalReport) -> None:
    """Say so when the policy's catalog holds none or few of history's action names."""
    total, missing = report.history_actions, report.uncataloged_actions
    if not total or (total - len(missing)) / total >= FEW_CATALOGED:
        return
    shown = ", ".join(missing[:8]) + (", …" if len(missing) > 8 else "")
    err.print(
        f"[yellow]warning:[/] the policy's catalog holds {total - len(missing)} of the "
        f"{total} action names in the history (missing, most frequent first: {shown}); "
        "hits can only come from cataloged actions, so the hit rates below measure the "
        "catalog. Catalog them under the names history uses (docs/policy-reference.md).",
        highlight=False,
    )


def _read(path: Path) -> list[Event]:
    """Events of a JSONL file, or of a labelled CSV (by its .csv suffix)."""
    from cli.produce import read_events
    from processors.recommend.evaluate import read_labelled_csv

    if path.suffix.lower() == ".csv":
        return read_labelled_csv(path)
    return list(read_events(path))
