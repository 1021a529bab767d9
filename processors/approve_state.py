"""What the approve processor keeps in its tables, and how it reads back (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from processors.approve_rules import Pending
from schemas.events import ActionSpec


def item_to_json(item: Pending, partition: int) -> dict[str, Any]:
    """A queue item as stored, with the partition it lives in (timers only act on items
    of the partitions this worker is active for)."""
    return {
        "partition": partition,
        "recommendation_id": item.recommendation_id,
        "case_id": item.case_id,
        "decision_event_id": item.decision_event_id,
        "correlation_id": item.correlation_id,
        "workflow": item.workflow,
        "action": {"name": item.action.name, "params": dict(item.action.params)},
        "approvals_required": item.approvals_required,
        "eligible_roles": list(item.eligible_roles),
        "expires_at": item.expires_at.isoformat(),
        "approvers": list(item.approvers),
        "status": item.status,
        "suggest_only": item.suggest_only,
        "policy_version": item.policy_version,
        "reviews_seen": list(item.reviews_seen),
        "review_events": list(item.review_events),
        "approver_roles": [list(r) for r in item.approver_roles],
        "proposed_by": item.proposed_by,
        "case_bound": dict(item.case_bound),
    }


def no_item(outcome: str, partition: int) -> dict[str, Any]:
    """What is stored for a decision that opened no item (denied, auto, shadowed…)."""
    return {"partition": partition, "no_item": outcome}


def item_from_json(data: dict[str, Any] | None) -> Pending | None:
    """The stored item; None when nothing, or a `no_item` marker, is stored."""
    if data is None or "no_item" in data:
        return None
    return Pending(
        recommendation_id=data["recommendation_id"],
        case_id=data["case_id"],
        decision_event_id=data["decision_event_id"],
        correlation_id=data["correlation_id"],
        workflow=data["workflow"],
        action=ActionSpec(name=data["action"]["name"], params=dict(data["action"]["params"])),
        approvals_required=data["approvals_required"],
        eligible_roles=tuple(data["eligible_roles"]),
        expires_at=datetime.fromisoformat(data["expires_at"]),
        approvers=tuple(data["approvers"]),
        status=data["status"],
        suggest_only=data["suggest_only"],
        policy_version=data["policy_version"],
        reviews_seen=tuple(data["reviews_seen"]),
        # Absent from items stored before replays were told apart from redeliveries.
        review_events=tuple(data.get("review_events", ())),
        # Absent from items stored before approvals were bound to roles and proposers.
        approver_roles=tuple(tuple(r) for r in data.get("approver_roles", ())),
        proposed_by=data.get("proposed_by"),
        case_bound=dict(data.get("case_bound", {})),
    )
