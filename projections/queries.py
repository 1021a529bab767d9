"""Read-side queries for the CLI and the console: traces, metrics by segment, audit checks.

All SQL is static text with bound parameters; the only composed parts are identifiers from
fixed allow-lists (metric dimensions), quoted with psycopg.sql.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

DIMENSIONS = ("day", "workflow", "phase", "issue_class", "queue", "team", "channel")
COUNTS = (
    "recommendations",
    "decided",
    "denied",
    "reviewed",
    "accepted",
    "overridden",
    "rejected",
    "executions",
    "executions_failed",
    "executions_rolled_back",
    "cases_opened",
    "first_actions",
    "first_action_seconds",
    "cases_resolved",
    "resolved_now",
    "resolution_seconds",
    "cases_reopened",
)
# Each rate is a ratio of two sums, so any grouping re-aggregates exactly.
RATES = {
    "acceptance_rate": ("accepted", "reviewed"),
    "override_rate": ("overridden", "reviewed"),
    "mean_first_action_seconds": ("first_action_seconds", "first_actions"),
    "mean_resolution_seconds": ("resolution_seconds", "resolved_now"),
    "error_rate": ("executions_failed", "executions"),
    "rollback_rate": ("executions_rolled_back", "executions"),
    "denial_rate": ("denied", "decided"),
    "reopen_rate": ("cases_reopened", "cases_resolved"),
}


def trace(conn: psycopg.Connection, case_id: str) -> list[dict[str, Any]]:
    """The case's whole story in order (event time, then the log's own order)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT occurred_at, event_type, actor, summary, topic, partition, kafka_offset, "
            "event_id, detail, trace_id FROM case_timeline WHERE case_id = %s "
            "ORDER BY occurred_at, topic, partition, kafka_offset",
            (case_id,),
        ).fetchall()


def metrics(conn: psycopg.Connection, by: list[str]) -> list[dict[str, Any]]:
    """The metrics view re-aggregated by any dimensions (sums first, rates from the sums)."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(
            f"unknown dimension(s) {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}"
        )
    dims = [sql.Identifier(d) for d in by]
    sums = [sql.SQL("sum({c}) AS {c}").format(c=sql.Identifier(c)) for c in COUNTS]
    rates = [
        sql.SQL("sum({n})::float8 / nullif(sum({d}), 0) AS {r}").format(
            n=sql.Identifier(n), d=sql.Identifier(d), r=sql.Identifier(r)
        )
        for r, (n, d) in RATES.items()
    ]
    query = sql.SQL("SELECT {cols} FROM metrics{group}{order}").format(
        cols=sql.SQL(", ").join([*dims, *sums, *rates]),
        group=sql.SQL(" GROUP BY {}").format(sql.SQL(", ").join(dims)) if dims else sql.SQL(""),
        order=sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(dims)) if dims else sql.SQL(""),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


@dataclass(frozen=True)
class Gap:
    recommendation_id: str
    case_id: str
    missing: str


# What audit must hold, per outcome: the event types whose requirement asks for it, how
# the outcome is named when missing, and the query for the recommendations (id, case)
# older than a cutoff whose audit lacks it.
_GAP_CHECKS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("GuardrailDecided",),
        "GuardrailDecided",
        "SELECT p.payload::jsonb->>'recommendation_id', p.case_id FROM audit_log p "
        "WHERE p.event_type = 'RecommendationProduced' AND p.occurred_at < %s AND NOT "
        "EXISTS (SELECT 1 FROM audit_log d WHERE d.event_type = 'GuardrailDecided' AND "
        "d.case_id = p.case_id AND d.payload::jsonb->>'recommendation_id' = "
        "p.payload::jsonb->>'recommendation_id') ORDER BY 1",
    ),
    (
        ("ApprovalCompleted", "ApprovalExpired"),
        "ApprovalCompleted or ApprovalExpired",
        "SELECT d.payload::jsonb->>'recommendation_id', d.case_id FROM audit_log d "
        "WHERE d.event_type = 'GuardrailDecided' "
        "AND d.payload::jsonb->>'outcome' = 'approval_required' "
        "AND (d.payload::jsonb->>'expires_at')::timestamptz < %s AND NOT EXISTS ("
        "SELECT 1 FROM audit_log a WHERE a.case_id = d.case_id "
        "AND a.event_type IN ('ApprovalCompleted', 'ApprovalExpired') "
        "AND a.payload::jsonb->>'recommendation_id' = "
        "d.payload::jsonb->>'recommendation_id') ORDER BY 1",
    ),
    (
        ("ExecutionSucceeded", "ExecutionFailed"),
        "ExecutionSucceeded or ExecutionFailed",
        "SELECT x.payload::jsonb->>'recommendation_id', x.case_id FROM audit_log x "
        "WHERE x.event_type = 'ExecutionRequested' AND x.occurred_at < %s AND NOT EXISTS ("
        "SELECT 1 FROM audit_log o WHERE o.case_id = x.case_id "
        "AND o.event_type IN ('ExecutionSucceeded', 'ExecutionFailed') "
        "AND o.payload::jsonb->>'execution_id' = x.payload::jsonb->>'execution_id') "
        "ORDER BY 1",
    ),
)


def audit_gaps(
    conn: psycopg.Connection,
    required: tuple[str, ...],
    now: datetime,
    grace: timedelta = timedelta(minutes=5),
) -> list[Gap]:
    """Recommendations whose audited trace lacks an outcome the policy says audit must hold.

    Read from ``audit_log`` alone (not the other read models), so rows removed from the
    audit are found even when the current-state tables still show the outcome. ``grace``
    leaves time for an outcome that is merely still on its way.
    """
    gaps: list[Gap] = []
    cutoff = now - grace
    for wanted_by, missing, query in _GAP_CHECKS:
        if any(r.startswith(wanted_by) for r in required):
            gaps += [Gap(r, c, missing) for r, c in conn.execute(query, (cutoff,)).fetchall()]
    return gaps


# A case no workflow matched has no workflow and no phase: it is out of scope, not "None".
OUT_OF_SCOPE = "(out of scope)"


def segment_label(dimension: str, value: object) -> str:
    """How a metrics segment is shown: out of scope for a missing workflow or phase,
    `(none)` for any other missing value."""
    if value is None:
        return OUT_OF_SCOPE if dimension in ("workflow", "phase") else "(none)"
    return str(value)
