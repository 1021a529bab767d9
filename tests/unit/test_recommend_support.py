"""Builders shared by the recommend tests: a hand-made case history and policies.

(Named test_recommend_* so it sits with the tests it serves; it holds no tests.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from policy.loader import LoadedPolicy, default_policy_path, load_policy_text
from processors.recommend.memory import Memory
from processors.recommend.redacted_view import Visibility
from schemas.events import (
    ActionSpec,
    CaseOpened,
    CaseReclassified,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    Event,
    ReviewSubmitted,
    Scalar,
)

AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
# Cases are opened (and updated) after the labels above were given: a recommendation
# learns only from labels older than its case (point-in-time).
OPENED_AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def opened(
    case_id: str,
    subject: str,
    description: str,
    *,
    queue: str = "billing",
    customer: dict[str, str] | None = None,
    attributes: dict[str, Scalar] | None = None,
    priority: str = "normal",
) -> CaseOpened:
    return CaseOpened(
        event_id=f"open-{case_id}",
        case_id=case_id,
        occurred_at=OPENED_AT,
        source="helpdesk",
        channel="email",
        queue=queue,
        team="team",
        issue_class=None,
        subject=subject,
        description=description,
        priority=priority,
        customer=customer if customer is not None else {"id": "cu-1", "name": "Ann Lee"},
        attributes=attributes if attributes is not None else {},
    )


def updated(case_id: str, changes: dict[str, Scalar], n: int = 1) -> CaseUpdated:
    return CaseUpdated(
        event_id=f"upd-{case_id}-{n}",
        case_id=case_id,
        occurred_at=OPENED_AT,
        actor="agent.kim",
        changes=changes,
        note=None,
    )


def resolved(case_id: str, category: str, *actions: ActionSpec, at: datetime = AT) -> CaseResolved:
    return CaseResolved(
        event_id=f"res-{case_id}-{at.timestamp():.0f}",
        case_id=case_id,
        occurred_at=at,
        resolved_by="agent.lou",
        resolution_code="done",
        category=category,
        actions_taken=tuple(actions),
    )


def reclassified(case_id: str, category: str, at: datetime = LATER) -> CaseReclassified:
    return CaseReclassified(
        event_id=f"rcl-{case_id}-{category}",
        case_id=case_id,
        occurred_at=at,
        review_id=f"rv-{case_id}",
        actor="op.ada",
        roles=("operator",),
        category=category,
        reason="wrong class",
    )


def overridden(case_id: str, action: ActionSpec, at: datetime = LATER) -> ReviewSubmitted:
    return ReviewSubmitted(
        event_id=f"ovr-{case_id}-{action.name}",
        case_id=case_id,
        occurred_at=at,
        review_id=f"rv-{case_id}",
        recommendation_id=f"rec-{case_id}",
        actor="op.ada",
        roles=("operator",),
        verdict="override",
        override_action=action,
    )


def reopened(case_id: str, at: datetime = LATER) -> CaseReopened:
    return CaseReopened(event_id=f"reo-{case_id}", case_id=case_id, occurred_at=at, reason="again")


# Nine resolved cases in four categories: (case, queue, subject, description, category,
# the action humans took and its parameters).
HISTORY: tuple[tuple[str, str, str, str, str, str, dict[str, Scalar]], ...] = (
    (
        "h-pw-1",
        "identity",
        "Account locked after password change",
        "I changed my password and now my account is locked.",
        "password_reset",
        "reset_password",
        {"method": "email_link"},
    ),
    (
        "h-pw-2",
        "identity",
        "Cannot log in, account locked",
        "Locked out of my account since the password reset.",
        "password_reset",
        "reset_password",
        {"method": "email_link"},
    ),
    (
        "h-pw-3",
        "identity",
        "Password not accepted",
        "The portal says my password is wrong and the account is locked.",
        "password_reset",
        "reset_password",
        {"method": "sms_code"},
    ),
    (
        "h-mfa-1",
        "identity",
        "Two-factor codes not arriving",
        "SMS verification codes stopped arriving on my phone.",
        "mfa_issue",
        "resend_mfa_enrollment",
        {"factor": "sms"},
    ),
    (
        "h-mfa-2",
        "identity",
        "No verification code",
        "The two-factor SMS code never arrives.",
        "mfa_issue",
        "resend_mfa_enrollment",
        {"factor": "sms"},
    ),
    (
        "h-bill-1",
        "billing",
        "Charged twice for my order",
        "My card was charged twice for order ORD-1001. Please refund the duplicate.",
        "double_charge",
        "refund_payment",
        {"amount": 49.0, "order_id": "ORD-1001"},
    ),
    (
        "h-bill-2",
        "billing",
        "Duplicate charge",
        "I was charged twice this month, please refund one charge.",
        "double_charge",
        "refund_payment",
        {"amount": 49.0, "order_id": "ORD-1002"},
    ),
    (
        "h-bill-3",
        "billing",
        "Double payment taken",
        "Payment was charged twice on my card.",
        "double_charge",
        "refund_payment",
        {"amount": 20.0, "order_id": "ORD-1003"},
    ),
    (
        "h-plan-1",
        "billing",
        "Downgrade to the basic plan",
        "Please move our workspace to the basic plan next month.",
        "plan_change",
        "change_plan",
        {"plan": "basic"},
    ),
)


def history() -> list[Event]:
    """The cases of HISTORY, each opened then resolved (fresh events on every call)."""
    events: list[Event] = []
    for case_id, queue, subject, description, category, action, params in HISTORY:
        events.append(opened(case_id, subject, description, queue=queue))
        events.append(resolved(case_id, category, ActionSpec(name=action, params=dict(params))))
    return events


def default_policy() -> LoadedPolicy:
    return load_policy_text(Path(default_policy_path()).read_text(encoding="utf-8"))


DEFAULT_VISIBILITY = Visibility.from_policy(default_policy().policy.model_visibility)
# A correction the history's humans never made: an override teaches it.
ESCALATE = ActionSpec(name="escalate_to_specialist", params={"team": "finance"})


def policy_with(*, case_bound: bool = True, **billing_recommender: Any) -> LoadedPolicy:
    """The default policy with the billing workflow's recommender replaced.

    `case_bound=False` also drops every `from_case`, so that a model's own parameter
    values are judged (the contract for parameters the policy does not bind).
    """
    document = yaml.safe_load(Path(default_policy_path()).read_text(encoding="utf-8"))
    document["workflows"]["billing"]["recommender"] = billing_recommender
    if not case_bound:
        for action in document["catalog"].values():
            for spec in action.get("params", {}).values():
                spec.pop("from_case", None)
    return load_policy_text(yaml.safe_dump(document, sort_keys=False))


def learned(events: list[Event], policy: LoadedPolicy | None = None, **knobs: int) -> Memory:
    """A memory under the policy's allowlist (default: the default policy's) that learned
    `events`, not fitted."""
    visibility = (
        DEFAULT_VISIBILITY
        if policy is None
        else Visibility.from_policy(policy.policy.model_visibility)
    )
    memory = Memory(visibility, **knobs)
    memory.replay(events)
    return memory


def memory_for(policy: LoadedPolicy, events: list[Event] | None = None, **knobs: int) -> Memory:
    """A memory under the policy's allowlist that learned `events` (default: `history()`)
    and was fitted in this process (no child process to spawn in unit tests)."""
    memory = learned(history() if events is None else events, policy, **knobs)
    memory.refit(in_process=True)
    return memory
