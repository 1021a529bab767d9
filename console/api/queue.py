"""GET /api/queue: the pending reviews the caller may act on, with the actions they may take."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, Query

from console.api import reads
from console.api.deps import Conn, CurrentOperator, Services, Svc
from console.api.models import IfAccepted, QueueItem, Recommended, SimilarCase, Why, YouMay
from console.api.permissions import may_reclassify, override_choices, review_refusal
from console.api.service_errors import Conflict, Forbidden, NotFound
from console.auth import Operator
from policy.model import Policy
from schemas.events import ActionSpec, action_digest

router = APIRouter(tags=["queue"])


def case_path(case_id: str) -> str:
    return f"/api/cases/{quote(case_id, safe='')}/trace"


def policy_in_force(svc: Services, conn: psycopg.Connection) -> Policy | None:
    in_force = svc.policies.get(conn)
    return in_force.loaded.policy if in_force else None


def to_item(row: dict[str, Any], operator: Operator, policy: Policy | None) -> QueueItem:
    """One approval_queue row as the caller sees it: what, why, what happens, what you may do."""
    reasons = list(row["reasons"] or [])
    return QueueItem(
        recommendation_id=row["recommendation_id"],
        case_id=row["case_id"],
        subject=row["subject"],
        queue=row["queue"],
        team=row["team"],
        channel=row["channel"],
        issue_class=row["issue_class"],
        priority=row["priority"],
        workflow=row["workflow"],
        phase=row["phase"],
        policy_version=row["policy_version"],
        requested_at=row["requested_at"],
        recommended=Recommended(
            action=row["action_name"], params=row["action_params"] or {}, summary=row["summary"]
        ),
        params_hash=row["params_hash"]
        or (
            action_digest(ActionSpec(name=row["action_name"], params=row["action_params"] or {}))
            if row["action_name"]
            else None
        ),
        proposed_by=row["proposed_by"],
        why=Why(
            rationale=row["rationale"],
            similar_cases=[
                SimilarCase(
                    case_id=s["case_id"],
                    similarity=float(s["similarity"]),
                    trace=case_path(s["case_id"]),
                )
                for s in row["similar_cases"] or []
            ],
            confidence=row["confidence"],
            predicted_category=row["predicted_category"],
            guard_reasons=reasons,
        ),
        if_accepted=IfAccepted(
            description=row["action_description"],
            effects={k: v for k, v in (row["effects"] or {}).items() if v is not None},
            risk=row["risk"],
            reversible=row["reversible"],
            rollback_action=row["rollback_action"],
            executed_by_casegate="suggest_only" not in reasons,
            approvals_required=row["approvals_required"] or 0,
            approvals_received=row["approvals_received"] or 0,
            approvers=list(row["approvers"] or []),
            eligible_roles=list(row["eligible_roles"] or []),
            expires_at=row["expires_at"],
        ),
        you_may=YouMay(
            approve=True,
            reject=True,
            override=override_choices(operator, policy, row["workflow"]) if policy else [],
            reclassify=may_reclassify(operator, policy),
        ),
    )


def item_for(
    svc: Services, conn: psycopg.Connection, operator: Operator, recommendation_id: str
) -> QueueItem:
    """The pending item, or 404 / 409 / 403 saying why the caller cannot act on it."""
    row = reads.queue_item(conn, recommendation_id)
    if row is None:
        raise NotFound(f"no pending review for recommendation {recommendation_id!r}")
    row = svc.revealer.reveal(conn, row)
    if row["expires_at"] is not None and row["expires_at"] <= svc.clock():
        raise Conflict(f"recommendation {recommendation_id} expired at {row['expires_at']}")
    refusal = review_refusal(operator, row["eligible_roles"] or (), row["approvers"] or ())
    if refusal:
        raise Forbidden(refusal)
    return to_item(row, operator, policy_in_force(svc, conn))


@router.get("/queue", response_model=list[QueueItem], summary="Your approval queue")
def queue(
    operator: CurrentOperator,
    svc: Svc,
    conn: Conn,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[QueueItem]:
    """Pending reviews you may act on (your roles ∩ the item's eligible roles, not yet
    approved by you, not expired), soonest expiry first, each with the actions you may take."""
    rows = svc.revealer.reveal(conn, reads.queue_for(conn, operator, svc.clock(), limit))
    policy = policy_in_force(svc, conn)
    return [to_item(r, operator, policy) for r in rows]


@router.get(
    "/queue/{recommendation_id}", response_model=QueueItem, summary="One item of your queue"
)
def queue_entry(
    recommendation_id: str, operator: CurrentOperator, svc: Svc, conn: Conn
) -> QueueItem:
    return item_for(svc, conn, operator, recommendation_id)
