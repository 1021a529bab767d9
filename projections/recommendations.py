"""``recommendation_facts``, ``executions`` and the published policies' catalogs.

One row per recommendation gathers what was recommended, what the guardrails decided and
what humans made of it; ``approval_queue``, ``metrics`` and ``shadow_alignment`` are views
over these rows (migration 002), so every figure can be traced back to its events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import psycopg

from projections.envelope import Envelope
from projections.statements import Step, run_in_order
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    GuardrailDecided,
    PolicyPublished,
    RecommendationProduced,
    ReviewDenied,
    ReviewRecorded,
)

log = logging.getLogger(__name__)


PRODUCED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, produced_at, workflow,
    predicted_category, confidence, action_name, action_params, summary, rationale,
    similar_cases, provenance)
VALUES (%(recommendation_id)s, %(case_id)s, %(at)s, %(workflow)s, %(category)s,
    %(confidence)s, %(action_name)s, %(action_params)s, %(summary)s, %(rationale)s,
    %(similar)s, %(provenance)s)
ON CONFLICT (recommendation_id) DO UPDATE SET produced_at = EXCLUDED.produced_at,
    -- The guard's view of workflow and action wins, whichever event is read first.
    workflow = CASE WHEN f.decided_at IS NULL THEN EXCLUDED.workflow ELSE f.workflow END,
    predicted_category = EXCLUDED.predicted_category, confidence = EXCLUDED.confidence,
    action_name = CASE WHEN f.decided_at IS NULL THEN EXCLUDED.action_name
                       ELSE f.action_name END,
    action_params = CASE WHEN f.decided_at IS NULL THEN EXCLUDED.action_params
                         ELSE f.action_params END,
    summary = EXCLUDED.summary, rationale = EXCLUDED.rationale,
    similar_cases = EXCLUDED.similar_cases, provenance = EXCLUDED.provenance
"""
DECIDED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, workflow, phase,
    action_name, action_params, outcome, reasons, policy_version, decided_at,
    approvals_required, eligible_roles, expires_at, review_status)
VALUES (%(recommendation_id)s, %(case_id)s, %(workflow)s, %(phase)s, %(action_name)s,
    %(action_params)s, %(outcome)s, %(reasons)s, %(policy_version)s, %(at)s,
    %(approvals_required)s, %(eligible_roles)s, %(expires_at)s, %(review_status)s)
ON CONFLICT (recommendation_id) DO UPDATE SET workflow = EXCLUDED.workflow,
    phase = EXCLUDED.phase, action_name = EXCLUDED.action_name,
    action_params = EXCLUDED.action_params, outcome = EXCLUDED.outcome,
    reasons = EXCLUDED.reasons, policy_version = EXCLUDED.policy_version,
    decided_at = EXCLUDED.decided_at, approvals_required = EXCLUDED.approvals_required,
    eligible_roles = EXCLUDED.eligible_roles, expires_at = EXCLUDED.expires_at,
    review_status = EXCLUDED.review_status
"""
REVIEWED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, approvals_received,
    approvers, overridden)
VALUES (%(recommendation_id)s, %(case_id)s, %(received)s, ARRAY[%(actor)s], %(override)s)
ON CONFLICT (recommendation_id) DO UPDATE SET approvals_received = EXCLUDED.approvals_received,
    approvers = CASE WHEN %(actor)s = ANY (f.approvers) THEN f.approvers
                     ELSE f.approvers || %(actor)s END,
    overridden = f.overridden OR EXCLUDED.overridden
"""
REVIEW_DENIED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, reviews_denied)
VALUES (%(recommendation_id)s, %(case_id)s, 1)
ON CONFLICT (recommendation_id) DO UPDATE SET reviews_denied = f.reviews_denied + 1
"""
COMPLETED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, review_status, verdict,
    final_action_name, final_action_params, closed_at)
VALUES (%(recommendation_id)s, %(case_id)s, %(status)s, %(verdict)s, %(action_name)s,
    %(action_params)s, %(at)s)
ON CONFLICT (recommendation_id) DO UPDATE SET review_status = EXCLUDED.review_status,
    verdict = CASE WHEN EXCLUDED.verdict = 'accepted' AND f.overridden THEN 'overridden'
                   ELSE EXCLUDED.verdict END,
    final_action_name = EXCLUDED.final_action_name,
    final_action_params = EXCLUDED.final_action_params, closed_at = EXCLUDED.closed_at
"""
EXPIRED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, review_status, closed_at)
VALUES (%(recommendation_id)s, %(case_id)s, 'expired', %(at)s)
ON CONFLICT (recommendation_id) DO UPDATE SET review_status = 'expired',
    closed_at = EXCLUDED.closed_at
"""
EXEC_REQUESTED = """
INSERT INTO executions AS x (execution_id, recommendation_id, case_id, action_name,
    action_params, mode, requested_by, policy_version, requested_at, status)
VALUES (%(execution_id)s, %(recommendation_id)s, %(case_id)s, %(action_name)s,
    %(action_params)s, %(mode)s, %(requested_by)s, %(policy_version)s, %(at)s, 'requested')
ON CONFLICT (execution_id) DO UPDATE SET recommendation_id = EXCLUDED.recommendation_id,
    action_name = EXCLUDED.action_name, action_params = EXCLUDED.action_params,
    mode = EXCLUDED.mode, requested_by = EXCLUDED.requested_by,
    policy_version = EXCLUDED.policy_version, requested_at = EXCLUDED.requested_at
"""
EXEC_FINISHED = """
INSERT INTO executions AS x (execution_id, case_id, action_name, status, error_class,
    message, timed_out, finished_at)
VALUES (%(execution_id)s, %(case_id)s, %(action_name)s, %(status)s, %(error_class)s,
    %(message)s, %(timed_out)s, %(at)s)
ON CONFLICT (execution_id) DO UPDATE SET
    status = CASE WHEN x.rolled_back THEN 'rolled_back' ELSE EXCLUDED.status END,
    error_class = EXCLUDED.error_class, message = EXCLUDED.message,
    timed_out = EXCLUDED.timed_out, finished_at = EXCLUDED.finished_at
"""
EXEC_ROLLED_BACK = """
INSERT INTO executions AS x (execution_id, case_id, action_name, status, rolled_back,
    message, finished_at)
VALUES (%(execution_id)s, %(case_id)s, %(action_name)s, 'rolled_back', true, %(message)s,
    %(at)s)
ON CONFLICT (execution_id) DO UPDATE SET status = 'rolled_back', rolled_back = true,
    message = coalesce(x.message || '; ', '') || EXCLUDED.message
"""
POLICY = """
INSERT INTO policy_versions (version, sha256, author, published_at, document)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT (version) DO NOTHING
"""
CATALOG = """
INSERT INTO catalog_actions (policy_version, name, description, risk, effects, reversible,
    rollback_action, permission, approvals, approval_roles)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _action(action: ActionSpec | None) -> dict[str, Any]:
    return {
        "action_name": action.name if action else None,
        "action_params": _json(action.params) if action else None,
    }


class RecommendationFactsProjection:
    name: str = "recommendation_facts"

    def apply(self, cur: psycopg.Cursor, batch: Sequence[Envelope]) -> None:
        run_in_order(cur, (step for env in batch for step in self.steps(env.event)))

    def steps(self, e: Event) -> Iterator[Step]:
        """The statements one event asks for, in order."""
        base = {"case_id": e.case_id, "at": e.occurred_at}
        match e:
            case RecommendationProduced():
                yield (
                    PRODUCED,
                    base
                    | _action(e.action)
                    | {
                        "recommendation_id": e.recommendation_id,
                        "workflow": e.workflow,
                        "category": e.category,
                        "confidence": e.confidence,
                        "summary": e.summary,
                        "rationale": e.rationale,
                        "similar": _json(
                            [
                                {"case_id": s.case_id, "similarity": s.similarity}
                                for s in e.similar_cases
                            ]
                        ),
                        "provenance": _json(
                            {
                                "recommender": e.provenance.recommender,
                                "model": e.provenance.model,
                                "prompt_version": e.provenance.prompt_version,
                                "policy_version": e.provenance.policy_version,
                                "fields_seen": list(e.provenance.fields_seen),
                                "input_sha256": e.provenance.input_sha256,
                                "fallback_reason": e.provenance.fallback_reason,
                            }
                        ),
                    },
                )
            case GuardrailDecided():
                yield (
                    DECIDED,
                    base
                    | _action(e.action)
                    | {
                        "recommendation_id": e.recommendation_id,
                        "workflow": e.workflow,
                        "phase": e.phase,
                        "outcome": e.outcome,
                        "reasons": list(e.reasons),
                        "policy_version": e.policy_version,
                        "approvals_required": e.approvals_required,
                        "eligible_roles": list(e.eligible_roles),
                        "expires_at": e.expires_at,
                        "review_status": "pending" if e.outcome == "approval_required" else None,
                    },
                )
            case ReviewRecorded():
                yield (
                    REVIEWED,
                    base
                    | {
                        "recommendation_id": e.recommendation_id,
                        "actor": e.actor,
                        "received": e.approvals_received,
                        "override": e.verdict == "override",
                    },
                )
            case ReviewDenied() if e.recommendation_id:
                yield (REVIEW_DENIED, base | {"recommendation_id": e.recommendation_id})
            case ApprovalCompleted():
                approved = e.outcome == "approved"
                yield (
                    COMPLETED,
                    base
                    | _action(e.action)
                    | {
                        "recommendation_id": e.recommendation_id,
                        "status": "approved" if approved else "rejected",
                        "verdict": "accepted" if approved else "rejected",
                    },
                )
            case ApprovalExpired():
                yield (EXPIRED, base | {"recommendation_id": e.recommendation_id})
            case ExecutionRequested():
                yield (
                    EXEC_REQUESTED,
                    base
                    | _action(e.action)
                    | {
                        "execution_id": e.execution_id,
                        "recommendation_id": e.recommendation_id,
                        "mode": e.mode,
                        "requested_by": e.requested_by,
                        "policy_version": e.policy_version,
                    },
                )
            case ExecutionSucceeded():
                yield (
                    EXEC_FINISHED,
                    base
                    | {
                        "execution_id": e.execution_id,
                        "action_name": e.action_name,
                        "status": "succeeded",
                        "error_class": None,
                        "message": None,
                        "timed_out": False,
                    },
                )
            case ExecutionFailed():
                yield (
                    EXEC_FINISHED,
                    base
                    | {
                        "execution_id": e.execution_id,
                        "action_name": e.action_name,
                        "status": "failed",
                        "error_class": e.error_class,
                        "message": e.message,
                        "timed_out": e.timed_out,
                    },
                )
            case ExecutionRolledBack():
                yield (
                    EXEC_ROLLED_BACK,
                    base
                    | {
                        "execution_id": e.execution_id,
                        "action_name": e.action_name,
                        "message": f"rolled back with {e.rollback_action}: {e.reason}",
                    },
                )
            case PolicyPublished():
                yield from self._policy_steps(e)

    @staticmethod
    def _policy_steps(e: PolicyPublished) -> Iterator[Step]:
        from policy.loader import PolicyInvalid, load_policy_text

        yield (POLICY, (e.version, e.sha256, e.author, e.occurred_at, e.document))
        try:
            policy = load_policy_text(e.document).policy
        except PolicyInvalid as exc:
            # The publisher validates first; an invalid document here is kept (audited) but
            # contributes no catalog.
            log.warning("policy %s (event %s) does not load: %s", e.version, e.event_id, exc)
            return
        for action in policy.catalog.values():
            yield (
                CATALOG,
                (
                    e.version,
                    action.name,
                    action.description,
                    action.risk,
                    _json(action.effects.model_dump(exclude_none=True)),
                    action.reversible,
                    action.rollback.action if action.rollback else None,
                    action.permission,
                    action.approvals.count,
                    list(action.approvals.roles),
                ),
            )
