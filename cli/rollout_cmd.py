"""`casegate rollout status|approve|kill`: the rollout from the command line.

Approving and killing act for an operator, as the console does: the operator's bearer
token (`--token` or CASEGATE_OPERATOR_TOKEN) names who and with which roles, the same
checks as the console's run first, and the request goes to `phase-requests` as the
console's principal (the only one that may write it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import psycopg
import typer
from psycopg_pool import ConnectionPool
from rich.console import Console
from rich.table import Table

from console.api.deps import Services
from console.api.policies import PolicyCache
from console.api.rollout import approve_proposal, pull_kill_switch, rollout_status
from console.api.service_errors import ConsoleError
from console.auth import Operator, authenticate
from infra.db import database_urls
from infra.kafka import make_producer
from infra.kafka_auth import as_principal
from infra.keys import Revealer
from infra.settings import Settings
from schemas.codec import Codec

app = typer.Typer(
    help="Evidence-gated phase changes: proposals, approvals, demotions, the kill switch.",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
Token = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="CASEGATE_OPERATOR_TOKEN",
        help="your operator bearer token (from `casegate operators add`)",
        show_default=False,
    ),
]
# Exit codes: 1 unreachable services, 2 refused (the message says why), 3 not permitted.
REFUSED, FORBIDDEN = 2, 3


@contextlib.contextmanager
def _services() -> Iterator[tuple[Services, psycopg.Connection]]:
    settings = as_principal(Settings(), "console")
    try:
        pool = ConnectionPool(
            database_urls(settings).app, min_size=1, max_size=1, open=True, timeout=10
        )
    except psycopg.OperationalError as exc:
        err.print(f"[red]error:[/] cannot reach PostgreSQL: {exc}")
        err.print("[yellow]next:[/] run `casegate up` (or set DATABASE_URL).")
        raise typer.Exit(1) from None
    producer = make_producer(settings)
    svc = Services(
        settings,
        pool,
        producer,
        Codec.load(),
        PolicyCache(),
        lambda: datetime.now(UTC),
        Revealer.of(settings),
    )
    try:
        with pool.connection() as conn:
            yield svc, conn
    finally:
        producer.flush(10)
        pool.close()


def _operator(conn: psycopg.Connection, token: str) -> Operator:
    operator = authenticate(conn, token)
    if operator is None:
        err.print("[red]error:[/] invalid, expired or revoked token")
        err.print("[yellow]next:[/] ask for a token: `casegate operators add NAME --roles …`")
        raise typer.Exit(FORBIDDEN)
    return operator


def _refused(exc: ConsoleError) -> typer.Exit:
    err.print(f"[red]refused:[/] {exc.message}")
    err.print("[yellow]next:[/] `casegate rollout status` shows proposals, approvals and why")
    return typer.Exit(FORBIDDEN if exc.status == 403 else REFUSED)


@app.command("status")
def status() -> None:
    """Each workflow's phase, readiness, open proposals and the latest phase changes."""
    with _services() as (svc, conn):
        report = rollout_status(svc, conn)
    if report.policy_version is None:
        out.print("no policy published yet (`casegate policy publish FILE`)")
        return
    out.print(f"policy in force: {report.policy_version}")
    table = Table("workflow", "phase", "readiness", "proposals (id: approvals)")
    for wf in report.workflows:
        props = "\n".join(
            f"{p.proposal_id} {p.from_phase}->{p.to_phase}: {p.status}, "
            f"{len(p.approvers)}/{p.approvals_required} ({', '.join(p.approvers) or 'none'})"
            for p in wf.proposals
            if p.status != "promoted"
        )
        table.add_row(wf.workflow, wf.phase, wf.readiness.verdict if wf.readiness else "", props)
    out.print(table)
    changes = [c for wf in report.workflows for c in wf.history[:5]]
    if changes:
        log = Table("when", "workflow", "event", "by", "what")
        for c in sorted(changes, key=lambda c: c.occurred_at, reverse=True):
            log.add_row(
                f"{c.occurred_at:%Y-%m-%d %H:%M:%S}", c.workflow, c.event_type, c.actor, c.summary
            )
        out.print(log)


@app.command("approve")
def approve(
    proposal_id: Annotated[str, typer.Argument(help="a proposal id from `rollout status`")],
    token: Token,
) -> None:
    """Approve a promotion proposal (two distinct supervisors promote it)."""
    with _services() as (svc, conn):
        operator = _operator(conn, token)
        try:
            sent = approve_proposal(svc, conn, operator, proposal_id, "cli")
        except ConsoleError as exc:
            raise _refused(exc) from None
    out.print(
        f"approval of {proposal_id} ({sent.workflow}) by {sent.actor} sent; "
        "`casegate rollout status` shows when it counted"
    )


@app.command("kill")
def kill(
    workflow: Annotated[str, typer.Argument(help="the workflow to demote to shadow")],
    reason: Annotated[str, typer.Option("--reason", help="why, for the audit")],
    token: Token,
) -> None:
    """Kill switch: demote WORKFLOW to shadow at once, recorded with who and why."""
    if len(reason.strip()) < 3:
        err.print("[red]refused:[/] say why (--reason, at least 3 characters)")
        raise typer.Exit(REFUSED)
    with _services() as (svc, conn):
        operator = _operator(conn, token)
        try:
            pull_kill_switch(svc, conn, operator, workflow, reason.strip(), "cli")
        except ConsoleError as exc:
            raise _refused(exc) from None
    out.print(f"kill switch of {workflow} pulled by {operator.name}; it goes to shadow at once")
