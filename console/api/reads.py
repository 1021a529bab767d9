"""Read queries the console needs beyond projections.queries (trace, metrics).

Static SQL with bound parameters only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from console.auth import Operator

Row = dict[str, Any]


def _all(conn: psycopg.Connection, query: str, params: Any = None) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _one(conn: psycopg.Connection, query: str, params: Any = None) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()


def queue_for(
    conn: psycopg.Connection, operator: Operator, now: datetime, limit: int = 200
) -> list[Row]:
    """Pending items `operator` may act on: one of their roles is eligible, they have not
    approved it already, and it has not expired (soonest expiry first)."""
    return _all(
        conn,
        "SELECT * FROM approval_queue WHERE eligible_roles && %(roles)s::text[] "
        "AND NOT (%(name)s = ANY (approvers)) "
        "AND (expires_at IS NULL OR expires_at > %(now)s) "
        "ORDER BY expires_at NULLS LAST, requested_at, recommendation_id LIMIT %(limit)s",
        {"roles": list(operator.roles), "name": operator.name, "now": now, "limit": limit},
    )


def queue_item(conn: psycopg.Connection, recommendation_id: str) -> Row | None:
    return _one(
        conn, "SELECT * FROM approval_queue WHERE recommendation_id = %s", (recommendation_id,)
    )


def recommendation(conn: psycopg.Connection, recommendation_id: str) -> Row | None:
    return _one(
        conn,
        "SELECT recommendation_id, case_id, workflow, phase, review_status, eligible_roles, "
        "approvers, expires_at, outcome, proposed_by, params_hash, "
        "coalesce(pending_action_name, action_name) AS item_action_name, "
        "coalesce(pending_action_params, action_params) AS item_action_params, "
        "coalesce(item_policy_version, policy_version) AS item_policy_version "
        "FROM recommendation_facts WHERE recommendation_id = %s",
        (recommendation_id,),
    )


def decision_of(conn: psycopg.Connection, case_id: str, recommendation_id: str) -> Row | None:
    """The latest guard decision's event id and correlation id (what a review answers)."""
    return _one(
        conn,
        "SELECT event_id, detail->>'correlation_id' AS correlation_id FROM case_timeline "
        "WHERE case_id = %s AND event_type = 'GuardrailDecided' "
        "AND detail->>'recommendation_id' = %s "
        "ORDER BY occurred_at DESC, kafka_offset DESC LIMIT 1",
        (case_id, recommendation_id),
    )


def case_opened_event(conn: psycopg.Connection, case_id: str) -> Row | None:
    return _one(
        conn,
        "SELECT event_id, detail FROM case_timeline WHERE case_id = %s "
        "AND event_type = 'CaseOpened' ORDER BY occurred_at LIMIT 1",
        (case_id,),
    )


def case_state(conn: psycopg.Connection, case_id: str) -> Row | None:
    return _one(conn, "SELECT * FROM case_state WHERE case_id = %s", (case_id,))


def failed_executions(conn: psycopg.Connection, limit: int) -> list[Row]:
    return _all(
        conn,
        "SELECT execution_id, case_id, recommendation_id, action_name, action_params, status, "
        "error_class, message, timed_out, rolled_back, requested_by, requested_at, finished_at "
        "FROM executions WHERE status IN ('failed', 'rolled_back') "
        "ORDER BY coalesce(finished_at, requested_at) DESC NULLS LAST, execution_id LIMIT %s",
        (limit,),
    )


def denials(conn: psycopg.Connection, limit: int) -> list[Row]:
    """Guard denials (policy refused the recommended action) and refused reviews."""
    return _all(
        conn,
        "SELECT * FROM ("
        "  SELECT 'guard' AS kind, case_id, recommendation_id, decided_at AS occurred_at, "
        "         'guard' AS actor, action_name, coalesce(reasons, '{}') AS reasons, "
        "         NULL AS detail "
        "  FROM recommendation_facts WHERE outcome = 'denied' "
        "  UNION ALL "
        "  SELECT 'review', case_id, detail->>'recommendation_id', occurred_at, actor, NULL, "
        "         ARRAY[detail->>'reason'], detail->>'detail' "
        "  FROM case_timeline WHERE event_type = 'ReviewDenied'"
        ") d ORDER BY occurred_at DESC NULLS LAST, case_id LIMIT %s",
        (limit,),
    )


def alignment_by_workflow_phase(conn: psycopg.Connection) -> list[Row]:
    """shadow_alignment re-aggregated per workflow and phase (sums first, then rates)."""
    return _all(
        conn,
        "SELECT workflow, phase, sum(compared)::bigint AS compared, "
        "sum(with_action)::bigint AS with_action, sum(action_matches)::bigint AS action_matches, "
        "sum(action_matches)::float8 / nullif(sum(with_action), 0) AS action_match_rate, "
        "sum(humans_acted)::bigint AS humans_acted, "
        "sum(action_matches)::float8 / nullif(sum(humans_acted), 0) AS action_hit_rate, "
        "sum(category_matches)::float8 / nullif(sum(compared), 0) AS category_match_rate "
        "FROM shadow_alignment GROUP BY workflow, phase",
    )


def ping(conn: psycopg.Connection) -> None:
    conn.execute("SELECT 1")
