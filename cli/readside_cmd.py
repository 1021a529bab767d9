"""CLI commands over the read models: trace, metrics, audit checks and replay."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import psycopg
import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from cli.progress import progress
from cli.tables import Col, print_fitted
from infra.db import database_urls
from infra.kafka_auth import as_principal
from infra.settings import Settings

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)
audit_app = typer.Typer(help="Check the tamper-evident audit log.", no_args_is_help=True)


def _connect(settings: Settings) -> psycopg.Connection:
    try:
        return psycopg.connect(database_urls(settings).app)
    except psycopg.OperationalError as exc:
        err.print(f"[red]error:[/] cannot reach PostgreSQL: {exc}")
        err.print("[yellow]next:[/] run `casegate up` (or set DATABASE_URL).")
        raise typer.Exit(1) from None


def trace(case_id: Annotated[str, typer.Argument(help="the case to trace")]) -> None:
    """The whole story of a case in order: opened, recommended, decided, reviewed, executed,
    resolved, reopened."""
    from infra.keys import Revealer
    from projections.queries import trace as query

    settings = Settings()
    with _connect(settings) as conn:
        rows = Revealer.of(settings).reveal(conn, query(conn, case_id))
    if not rows:
        err.print(f"no events for case {case_id!r}")
        err.print(
            "[yellow]next:[/] check the id, or whether the read models are running "
            "(`casegate run readmodels`)."
        )
        raise typer.Exit(1)
    print_fitted(
        out,
        [
            Col("when (UTC)", "when", "when it happened (UTC)", justify="left"),
            Col("event", justify="left"),
            Col("actor", justify="left"),
            Col("what happened", "what", "what happened", justify="left"),
            Col("where", justify="left", meaning="topic[partition]@offset"),
        ],
        [
            (
                r["occurred_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                r["event_type"],
                r["actor"] or "",
                r["summary"],
                f"{r['topic']}[{r['partition']}]@{r['kafka_offset']}",
            )
            for r in rows
        ],
        title=f"trace of {case_id}",
    )


def metrics(
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by", help="dimension(s): day, workflow, phase, issue_class, queue, team, channel"
        ),
    ] = None,
) -> None:
    """The rollout metrics, re-aggregated by any dimensions."""
    from projections.queries import metrics as query
    from projections.queries import segment_label

    dims = by or ["workflow"]
    with _connect(Settings()) as conn:
        try:
            rows = query(conn, dims)
        except ValueError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.0%}"

    def dur(v: float | None) -> str:
        return "—" if v is None else f"{v / 60:.1f} min"

    cols = [
        *(Col(d, justify="left") for d in dims),
        Col("recs", meaning="recommendations"),
        Col("accept", "acc", "acceptance rate"),
        Col("override", "ovr", "manual override rate"),
        Col("denial", "den", "policy denial rate"),
        Col("error", "err", "execution error rate"),
        Col("rollback", "rb", "rollback rate"),
        Col("1st action", "1st", "mean time to first meaningful action"),
        Col("resolution", "res", "mean time to resolution"),
        Col("reopen", "reo", "re-open rate"),
    ]
    print_fitted(
        out,
        cols,
        [
            (
                *(segment_label(d, r[d]) for d in dims),
                str(r["recommendations"]),
                pct(r["acceptance_rate"]),
                pct(r["override_rate"]),
                pct(r["denial_rate"]),
                pct(r["error_rate"]),
                pct(r["rollback_rate"]),
                dur(r["mean_first_action_seconds"]),
                dur(r["mean_resolution_seconds"]),
                pct(r["reopen_rate"]),
            )
            for r in rows
        ],
        title=f"metrics by {', '.join(dims)}",
    )


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk every hash chain of audit_log and check it against the signed anchors the read
    models published on Kafka; name every row that does not match."""
    from infra.secrets import anchor_key
    from projections.anchors import check_anchors, read_anchors
    from projections.audit import verify

    settings = Settings()
    with _connect(settings) as conn, progress(out) as bar:
        total = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        task = bar.add_task("verifying", total=total[0] if total else 0)
        result = verify(conn, lambda n: bar.advance(task, n))
        bar.update(task, completed=result.rows)
        try:
            anchors, forged = read_anchors(settings, anchor_key(settings))
        except KafkaException as exc:
            err.print(f"[red]error:[/] cannot read the audit anchors from Kafka: {exc}")
            err.print("[yellow]next:[/] run `casegate up` (or set KAFKA_BOOTSTRAP_SERVERS).")
            raise typer.Exit(1) from None
        problems = check_anchors(conn, anchors)
    if result.broken:
        b = result.broken
        problems.insert(
            0,
            f"{b.topic}[{b.partition}] seq {b.seq} (event {b.event_id}): {b.problem}",
        )
    problems += [f"anchor {f}" for f in forged]
    for problem in problems:
        err.print(f"[red]audit_log is NOT intact:[/] {problem}")
    if problems:
        raise typer.Exit(1)
    latest = max((a.at for a in anchors.values()), default=None)
    out.print(
        f"audit_log intact: {result.rows} rows in {result.chains} chains verified; "
        + (
            f"{len(anchors)} chain heads match their anchors (latest {latest})"
            if anchors
            else "no anchors published yet"
        )
    )


@audit_app.command("gaps")
def audit_gaps(
    policy_file: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="policy file whose audit.required_outcomes to check "
            "(default: the newest published policy)",
        ),
    ] = None,
) -> None:
    """List recommendations whose trace lacks an outcome the policy says audit must hold."""
    from policy.loader import load_policy_file, load_policy_text
    from projections.queries import audit_gaps as query

    with _connect(Settings()) as conn:
        if policy_file:
            loaded = load_policy_file(policy_file)
        else:
            row = conn.execute(
                "SELECT document FROM policy_versions ORDER BY published_at DESC LIMIT 1"
            ).fetchone()
            if row is None:
                err.print("no policy has been published yet")
                err.print("[yellow]next:[/] `casegate policy publish FILE`, or pass --policy.")
                raise typer.Exit(1)
            loaded = load_policy_text(row[0])
        gaps = query(conn, loaded.policy.audit.required_outcomes, datetime.now(UTC))
    if not gaps:
        out.print("audit complete: every recommendation's trace holds its required outcomes")
        return
    table = Table("recommendation", "case", "missing", title=f"{len(gaps)} audit gap(s)")
    for g in gaps:
        table.add_row(g.recommendation_id, g.case_id, g.missing)
    out.print(table)
    raise typer.Exit(1)


def replay(
    schema: Annotated[str, typer.Option(help="schema to rebuild into")] = "rebuild",
    compare: Annotated[bool, typer.Option(help="compare with the live read models")] = True,
) -> None:
    """Rebuild every read model from the beginning of the topics into fresh tables."""
    from projections.replay import differences, rebuild
    from schemas.codec import Codec

    settings = as_principal(Settings(), "readmodels")
    with progress(out) as bar:
        task = bar.add_task(f"replaying into schema {schema}", total=None)
        report = rebuild(
            settings,
            Codec.load(),
            schema,
            advance=lambda n: bar.advance(task, n),
            total=lambda n: bar.update(task, total=n),
        )
    out.print(
        f"rebuilt {report.events} events into schema {schema} in {report.seconds:.1f}s "
        f"({report.events / max(report.seconds, 1e-9):.0f} events/s; "
        f"{report.duplicates} duplicates dropped, {report.dead_letters_skipped} "
        "undecodable records skipped)"
    )
    if compare:
        with _connect(settings) as conn:
            diff = differences(conn, "public", schema)
        table = Table("read model", "rows that differ", title="rebuilt vs live")
        for name, n in diff.items():
            table.add_row(name, str(n))
        out.print(table)
        if any(diff.values()):
            err.print(
                "[yellow]the live read models differ from the replay[/] (they may "
                "still be catching up; stop producing and retry)"
            )
            raise typer.Exit(1)
