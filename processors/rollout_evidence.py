"""What the rollout processor reads from the read models: each workflow's evidence in its
current phase (policy.rollout_rules.Evidence) and its last executions and decisions
(policy.rollout_rules.Recent).

Only rows decided under the versions since the workflow entered its phase count
(`policy.rollout_rules.phase_versions`): that is the hysteresis. Static SQL, bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import psycopg

from policy.loader import LoadedPolicy
from policy.model import Workflow
from policy.rollout_rules import Evidence, Recent, phase_versions, readiness
from projections.queries import audit_gaps

_DECISIONS = (
    "SELECT count(*) FILTER (WHERE outcome IS NOT NULL), "
    "count(*) FILTER (WHERE outcome = 'denied'), count(*) FILTER (WHERE verdict IS NOT NULL), "
    "count(*) FILTER (WHERE verdict = 'accepted'), count(*) FILTER (WHERE verdict = 'overridden') "
    "FROM recommendation_facts WHERE workflow = %(wf)s AND policy_version = ANY(%(versions)s) "
    "AND decided_at >= %(since)s"
)
_EXECUTIONS = (
    "SELECT count(*), count(*) FILTER (WHERE e.status IN ('failed', 'rolled_back')), "
    "count(*) FILTER (WHERE e.rolled_back) FROM executions e "
    "JOIN recommendation_facts r ON r.recommendation_id = e.recommendation_id "
    "WHERE r.workflow = %(wf)s AND e.policy_version = ANY(%(versions)s) "
    "AND e.status <> 'requested' AND e.requested_at >= %(since)s"
)
# A case counts under the recommendation it was last decided on.
_CASES = (
    "SELECT count(*) FILTER (WHERE c.resolution_count > 0), "
    "count(*) FILTER (WHERE c.reopen_count > 0), "
    "count(*) FILTER (WHERE c.resolution_count > 0 AND r.action_name IS NOT NULL), "
    "count(*) FILTER (WHERE c.resolution_count > 0 AND r.action_name = ANY (c.actions_taken)) "
    "FROM case_state c JOIN recommendation_facts r "
    "ON r.recommendation_id = c.latest_recommendation_id "
    "WHERE r.workflow = %(wf)s AND r.policy_version = ANY(%(versions)s) "
    "AND r.decided_at >= %(since)s"
)
_BASELINE = (
    "SELECT count(*) FILTER (WHERE c.resolution_count > 0), "
    "count(*) FILTER (WHERE c.reopen_count > 0) "
    "FROM case_state c JOIN recommendation_facts r "
    "ON r.recommendation_id = c.latest_recommendation_id "
    "WHERE r.workflow = %(wf)s AND r.phase = 'shadow'"
)
_RECENT_EXECUTIONS = (
    "SELECT count(*), count(*) FILTER (WHERE status IN ('failed', 'rolled_back')), "
    "count(*) FILTER (WHERE rolled_back) FROM ("
    "  SELECT e.status, e.rolled_back FROM executions e "
    "  JOIN recommendation_facts r ON r.recommendation_id = e.recommendation_id "
    "  WHERE r.workflow = %(wf)s AND e.policy_version = ANY(%(versions)s) "
    "  AND e.status <> 'requested' "
    "  ORDER BY coalesce(e.finished_at, e.requested_at) DESC, e.execution_id DESC "
    "  LIMIT %(limit)s) x"
)
_RECENT_DECISIONS = (
    "SELECT count(*), count(*) FILTER (WHERE outcome = 'denied') FROM ("
    "  SELECT outcome FROM recommendation_facts WHERE workflow = %(wf)s "
    "  AND policy_version = ANY(%(versions)s) AND outcome IS NOT NULL "
    "  ORDER BY decided_at DESC, recommendation_id DESC LIMIT %(limit)s) x"
)
_WORKFLOW_OF = (
    "SELECT workflow, count(*) FROM recommendation_facts "
    "WHERE recommendation_id = ANY(%s) AND policy_version = ANY(%s) GROUP BY workflow"
)


def _row(conn: psycopg.Connection, query: str, params: dict[str, object]) -> tuple[int, ...]:
    row = conn.execute(query, params).fetchone()
    return tuple(int(v or 0) for v in row) if row else ()


def gather(
    conn: psycopg.Connection,
    history: Sequence[LoadedPolicy],
    now: datetime,
) -> dict[str, tuple[Evidence, Recent]]:
    """Evidence and recent outcomes of every workflow of the newest policy in `history`.

    The audit check reads the whole audit log, so it runs only for a workflow that is
    ready on every other count (and once per call at most).
    """
    policy = history[-1].policy
    gaps: list[str] | None = None
    out: dict[str, tuple[Evidence, Recent]] = {}
    for name, wf in policy.workflows.items():
        versions = phase_versions(history, name)
        evidence = _evidence(conn, wf, versions, now)
        if wf.promotion.audit_complete and readiness(wf, evidence).ready:
            if gaps is None:
                required = policy.audit.required_outcomes
                gaps = [g.recommendation_id for g in audit_gaps(conn, required, now)]
            found: dict[str, int] = (
                dict(conn.execute(_WORKFLOW_OF, (gaps, versions)).fetchall()) if gaps else {}
            )
            evidence = replace(evidence, audit_gaps=int(found.get(name, 0)))
        out[name] = (evidence, _recent(conn, wf, versions))
    return out


def _evidence(
    conn: psycopg.Connection, wf: Workflow, versions: list[str], now: datetime
) -> Evidence:
    params: dict[str, object] = {
        "wf": wf.name,
        "versions": versions,
        "since": now - timedelta(seconds=wf.promotion.window_s),
    }
    decided, denied, reviewed, accepted, overridden = _row(conn, _DECISIONS, params)
    executions, failed, rolled_back = _row(conn, _EXECUTIONS, params)
    resolved, reopened, with_action, matches = _row(conn, _CASES, params)
    base_resolved, base_reopened = _row(conn, _BASELINE, params)
    return Evidence(
        decided=decided,
        denied=denied,
        reviewed=reviewed,
        accepted=accepted,
        overridden=overridden,
        executions=executions,
        executions_failed=failed,
        executions_rolled_back=rolled_back,
        cases_resolved=resolved,
        cases_reopened=reopened,
        with_action=with_action,
        action_matches=matches,
        baseline_resolved=base_resolved,
        baseline_reopened=base_reopened,
    )


def _recent(conn: psycopg.Connection, wf: Workflow, versions: list[str]) -> Recent:
    d = wf.demotion
    base: dict[str, object] = {"wf": wf.name, "versions": versions}
    executions, failed, rolled_back = _row(
        conn, _RECENT_EXECUTIONS, {**base, "limit": d.last_executions}
    )
    decisions, denied = _row(conn, _RECENT_DECISIONS, {**base, "limit": d.last_decisions})
    return Recent(
        executions=executions,
        failed=failed,
        rolled_back=rolled_back,
        decisions=decisions,
        denied=denied,
    )
