"""The access review: every operator, their roles, their token's last use, the high-impact
approvals they made in a period; and the `AccessReviewed` event a reviewer records.

High impact is the deciding policy's own judgement, read from `catalog_actions` of the
version that decided each item: an action of risk `high` or `critical`, or one that needs
two approvers or more (the policy's "second set of eyes"). An override counts by the
action the operator chose, since that is what ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from console.send import send_acknowledged
from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import AccessEntry, AccessReviewed, new_event_id, record_key

HIGH_RISK = ("high", "critical")
HIGH_QUORUM = 2
ACCESS_REVIEW_CASE = "access-review"

OPERATORS = """
SELECT name, roles, created_at, revoked_at, token_expires_at, last_used_at
FROM operators ORDER BY name
"""
# One row per (approver, item) approved in the period with a high-impact action.
HIGH_IMPACT_APPROVALS = """
SELECT approver, r.case_id, r.recommendation_id, a.name, a.risk, a.approvals,
       coalesce(r.closed_at, r.decided_at) AS at
FROM recommendation_facts r
CROSS JOIN LATERAL unnest(r.approvers) AS approver
JOIN catalog_actions a ON a.policy_version = r.policy_version
                      AND a.name = coalesce(r.final_action_name, r.action_name)
WHERE (a.risk = ANY(%(risks)s) OR a.approvals >= %(quorum)s)
  AND coalesce(r.closed_at, r.decided_at) >= %(start)s
  AND coalesce(r.closed_at, r.decided_at) < %(end)s
ORDER BY approver, at, r.recommendation_id
"""


@dataclass(frozen=True, slots=True)
class Approval:
    case_id: str
    recommendation_id: str
    action: str
    risk: str
    approvals_required: int
    at: datetime


@dataclass(frozen=True, slots=True)
class OperatorAccess:
    name: str
    roles: tuple[str, ...]
    status: str  # active | revoked | expired
    created_at: datetime
    last_used_at: datetime | None
    unused: bool
    approvals: tuple[Approval, ...]

    def entry(self) -> AccessEntry:
        return AccessEntry(
            name=self.name,
            roles=self.roles,
            status=self.status,
            last_used_at=self.last_used_at,
            unused=self.unused,
            high_impact_approvals=len(self.approvals),
        )


def status_of(revoked_at: datetime | None, expires_at: datetime, now: datetime) -> str:
    if revoked_at is not None:
        return "revoked"
    return "expired" if expires_at <= now else "active"


def is_unused(
    status: str,
    created_at: datetime,
    last_used_at: datetime | None,
    now: datetime,
    unused_s: float,
) -> bool:
    """An active token not used for `unused_s` (a never-used one counts from its issue)."""
    if status != "active":
        return False
    return (last_used_at or created_at) <= now - timedelta(seconds=unused_s)


def access_review(
    conn: psycopg.Connection, start: datetime, end: datetime, unused_s: float
) -> list[OperatorAccess]:
    """Every operator with their access and the high-impact approvals of [start, end)."""
    approvals: dict[str, list[Approval]] = {}
    for approver, case_id, rec_id, action, risk, quorum, at in conn.execute(
        HIGH_IMPACT_APPROVALS,
        {"risks": list(HIGH_RISK), "quorum": HIGH_QUORUM, "start": start, "end": end},
    ):
        approvals.setdefault(approver, []).append(
            Approval(case_id, rec_id, action, risk, quorum, at)
        )
    result = []
    for name, roles, created, revoked, expires, last_used in conn.execute(OPERATORS):
        status = status_of(revoked, expires, end)
        result.append(
            OperatorAccess(
                name=name,
                roles=tuple(roles),
                status=status,
                created_at=created,
                last_used_at=last_used,
                unused=is_unused(status, created, last_used, end, unused_s),
                approvals=tuple(approvals.get(name, ())),
            )
        )
    return result


def record_review(
    settings: Settings,
    codec: Codec,
    reviewer: str,
    start: datetime,
    end: datetime,
    operators: list[OperatorAccess],
    policy_version: str | None,
    note: str | None,
) -> AccessReviewed:
    """Produce the AccessReviewed event (topic governance) and wait until the broker has it;
    the read models put it in the audit log."""
    event = AccessReviewed(
        event_id=new_event_id(),
        case_id=ACCESS_REVIEW_CASE,
        occurred_at=end,
        reviewer=reviewer,
        period_start=start,
        period_end=end,
        policy_version=policy_version,
        operators=tuple(o.entry() for o in operators),
        note=note,
    )
    send_acknowledged(
        settings, codec, event, record_key(event), not_sent="access review not recorded"
    )
    return event
