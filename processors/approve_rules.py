"""The approval state machine (pure; the approve agent only moves events in and out).

One `Pending` per recommendation that the guard sent for approval. Decisions, reviews
and clock ticks come in; ReviewRecorded / ReviewDenied / ApprovalCompleted /
ApprovalExpired / ExecutionRequested come out. Every produced event has an id derived
from the event that caused it, so a redelivered input yields the same ids and
consumers drop the duplicates. The semantics as tables: docs/decision-tables.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from policy.approval import approval_shortfall, override_refusals, quorum, review_refusal
from policy.checks import action_findings, is_denied
from policy.loader import LoadedPolicy
from processors.recommend.binding import bind_values
from schemas.envelope import caused_by
from schemas.events import (
    ActionSpec,
    Approval,
    ApprovalCompleted,
    ApprovalExpired,
    CaseResolved,
    Event,
    ExecutionRequested,
    GuardrailDecided,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
    Scalar,
    action_digest,
    derived_event_id,
)

PENDING, APPROVED, REJECTED, EXPIRED = "pending", "approved", "rejected", "expired"
CLOSED = "closed"  # closed without a verdict: the case resolved, the policy withdrew it
VERDICTS = ("approve", "reject", "override")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """An item in the approval queue, kept after it closes so late reviews are refused."""

    recommendation_id: str
    case_id: str
    decision_event_id: str
    correlation_id: str | None
    workflow: str
    action: ActionSpec
    approvals_required: int
    eligible_roles: tuple[str, ...]
    expires_at: datetime
    approvers: tuple[str, ...] = ()
    status: str = PENDING  # pending | approved | rejected | expired | closed
    # The roles each of `approvers` approved with (re-checked against the policy in force).
    approver_roles: tuple[tuple[str, ...], ...] = ()
    proposed_by: str | None = None  # operator whose override `action` is; never its approver
    # The case's values of the catalog's bound paths: an override's bound parameters.
    case_bound: Mapping[str, Scalar] = field(default_factory=dict)
    suggest_only: bool = False  # approval is recorded, casegate never executes
    policy_version: str  # the version under which `action` was last checked
    reviews_seen: tuple[str, ...] = ()  # review_ids already taken (redelivery guard)
    # The event_id each of reviews_seen came in ("" for items stored before it was kept):
    # the same review_id under another event_id is a replay, not a redelivery.
    review_events: tuple[str, ...] = ()


class _Refusal(Exception):
    """A review breaks a rule; internal control flow, never escapes this module."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def on_decision(
    decision: GuardrailDecided, now: datetime, existing: Pending | None = None
) -> tuple[Pending | None, list[Event]]:
    """Open a queue item for approval_required; request execution for auto_authorized.

    A redelivered decision leaves an existing item (and the approvals it holds) alone.
    Other outcomes produce nothing here.
    """
    if existing is not None and existing.decision_event_id == decision.event_id:
        return existing, []
    if decision.action is None:
        return existing, []
    if decision.outcome == "auto_authorized":
        return existing, [
            _execution(
                decision.event_id,
                decision.case_id,
                decision.correlation_id,
                decision.recommendation_id,
                decision.action,
                "auto",
                "policy",
                decision.policy_version,
                decision.workflow,
                now,
            )
        ]
    if decision.outcome != "approval_required":
        return existing, []
    if decision.expires_at is None or decision.workflow is None:
        raise ValueError(
            f"decision {decision.event_id} needs approval but has no "
            "expiry or workflow; the guard always sets both"
        )
    item = Pending(
        recommendation_id=decision.recommendation_id,
        case_id=decision.case_id,
        decision_event_id=decision.event_id,
        correlation_id=decision.correlation_id,
        workflow=decision.workflow,
        action=decision.action,
        approvals_required=max(1, decision.approvals_required),
        eligible_roles=decision.eligible_roles,
        expires_at=decision.expires_at,
        suggest_only="suggest_only" in decision.reasons,
        policy_version=decision.policy_version,
        case_bound=dict(decision.case_bound),
    )
    return item, []


def on_review(
    pending: Pending | None, review: ReviewSubmitted, policy: LoadedPolicy, now: datetime
) -> tuple[Pending | None, list[Event]]:
    """Apply one operator review to its queue item.

    Refused (ReviewDenied) when: the item is unknown; the verdict is malformed; the item
    is closed or expired; the review does not name the item's current action, parameter
    digest and policy version (what its operator saw); the operator holds no eligible
    role, already approved it, or proposed its action; an override action fails the
    guardrails. Otherwise recorded. An override replaces the item's action and starts its
    approvals from zero; at quorum, re-checked under the policy in force, the item
    completes (or closes when that policy withdrew the action); a reject closes it.
    """
    if pending is None or pending.case_id != review.case_id:
        return pending, [
            _denied(
                review,
                now,
                "unknown_item",
                f"no approval item for recommendation {review.recommendation_id} "
                f"of case {review.case_id}",
            )
        ]
    if review.review_id in pending.reviews_seen:
        taken = _taken_as(pending, review.review_id)
        if taken in ("", review.event_id):
            return pending, []  # redelivery: its events were produced the first time
        return pending, [
            _denied(
                review,
                now,
                "duplicate_review",
                f"review {review.review_id} was already taken as event {taken}; "
                "sent again under another event id it changes nothing",
            )
        ]
    try:
        _check_review(pending, review, now)
        if review.verdict == "approve":
            return _approve(pending, review, policy, now)
        if review.verdict == "reject":
            return _reject(pending, review, now)
        return _override(pending, review, policy, now)
    except _Refusal as refusal:
        denied = _denied(review, now, refusal.reason, refusal.detail)
        if refusal.reason == "expired":
            # The queue must not keep an item nobody can act on any more.
            closed, expired = on_tick(pending, now)
            return closed, [denied, *expired]
        return pending, [denied]


def on_tick(pending: Pending | None, now: datetime) -> tuple[Pending | None, list[Event]]:
    """Expire an open item at or past its expiry (ApprovalExpired); otherwise no change."""
    if pending is None or pending.status != PENDING or now < pending.expires_at:
        return pending, []
    expired = ApprovalExpired(
        # Derived from the decision, so a tick and a late review expire it with one id.
        **caused_by(
            pending.decision_event_id,
            "ApprovalExpired",
            case_id=pending.case_id,
            occurred_at=now,
            correlation_id=pending.correlation_id,
        ),
        recommendation_id=pending.recommendation_id,
        expired_at=pending.expires_at,
        approvals_received=len(pending.approvers),
    )
    return replace(pending, status=EXPIRED), [expired]


def on_expired(pending: Pending | None, expired: ApprovalExpired) -> Pending | None:
    """An ApprovalExpired (from a tick or a late review) closes its open item as expired.

    The approve agent reads its own ApprovalExpired back from `decisions`; only there may
    it change the item, so a timer never writes state itself.
    """
    if pending is None or pending.status != PENDING:
        return pending
    if pending.decision_event_id != expired.causation_id:
        return pending  # an expiry of some other decision for this recommendation
    return replace(pending, status=EXPIRED)


# --- the rules ------------------------------------------------------------------------


def _check_review(pending: Pending, review: ReviewSubmitted, now: datetime) -> None:
    """Checks common to every verdict, in the order the decision table lists them."""
    if review.verdict not in VERDICTS:
        raise _Refusal(
            "invalid_verdict", f"verdict {review.verdict!r} is not one of {', '.join(VERDICTS)}"
        )
    if (review.verdict == "override") != (review.override_action is not None):
        raise _Refusal(
            "invalid_verdict",
            "an override carries the operator's action; approve and reject do not",
        )
    if pending.status != PENDING:
        raise _Refusal(
            "item_closed", f"recommendation {pending.recommendation_id} is already {pending.status}"
        )
    if now >= pending.expires_at:
        raise _Refusal("expired", f"approval expired at {pending.expires_at.isoformat()}")
    _check_binding(pending, review)
    refusal = review_refusal(
        review.actor,
        review.roles,
        pending.eligible_roles,
        pending.approvers,
        approving=review.verdict == "approve",
        proposed_by=pending.proposed_by,
        action_name=pending.action.name,
    )
    if refusal is not None:
        raise _Refusal(refusal.reason, refusal.detail)


def _check_binding(pending: Pending, review: ReviewSubmitted) -> None:
    """A review approves exactly what its operator was shown: the item's action, its
    parameters (by digest) and the policy version it stood under. Anything else is a
    review of something that is no longer there."""
    if review.action_name is None or review.params_hash is None or review.policy_version is None:
        raise _Refusal(
            "unbound_review",
            "a review must name the action, params_hash and policy_version it was shown",
        )
    digest = action_digest(pending.action)
    if (review.action_name, review.params_hash) != (pending.action.name, digest):
        by = f" (proposed by {pending.proposed_by})" if pending.proposed_by else ""
        raise _Refusal(
            "stale_review",
            f"reviewed {review.action_name} {review.params_hash[:12]}; the item now holds "
            f"{pending.action.name} {digest[:12]}{by}: reload it and review again",
        )
    if review.policy_version != pending.policy_version:
        raise _Refusal(
            "policy_changed",
            f"reviewed under policy {review.policy_version}; the item stands under "
            f"{pending.policy_version}: reload it and review again",
        )


def _approve(
    pending: Pending, review: ReviewSubmitted, policy: LoadedPolicy, now: datetime
) -> tuple[Pending, list[Event]]:
    item = replace(
        _taken(pending, review),
        approvers=(*pending.approvers, review.actor),
        approver_roles=(*pending.approver_roles, tuple(review.roles)),
    )
    if len(item.approvers) < item.approvals_required:
        return item, [_recorded(item, review, now)]
    # At quorum: the policy in force decides, not the one the item was opened under.
    withdrawn = _withdrawn(item, policy)
    if withdrawn is not None:
        closed = replace(item, status=CLOSED)
        return closed, [
            _recorded(closed, review, now),
            _closed(closed, review.event_id, now, withdrawn),
        ]
    if approval_shortfall(item.action.name, _approvals(item), policy) is not None:
        entry = policy.policy.action(item.action.name)
        if entry is None:  # unreachable: _withdrawn refused unknown actions
            raise _Refusal("unknown_action", f"{item.action.name!r} is not in the catalog")
        need = quorum(policy, entry)
        kept = [(a, r) for a, r in _approvals(item) if set(r) & set(need.roles)]
        item = replace(
            item,
            approvers=tuple(a for a, _ in kept),
            approver_roles=tuple(r for _, r in kept),
            approvals_required=need.people,
            eligible_roles=need.roles,
            policy_version=policy.version,
        )
        return item, [_recorded(item, review, now)]
    return _complete(item, review, now, [_recorded(item, review, now)])


def _withdrawn(item: Pending, policy: LoadedPolicy) -> str | None:
    """Why the policy in force no longer lets the item's action run, or None."""
    workflow = policy.policy.workflows.get(item.workflow)
    if workflow is None:
        return f"action_withdrawn: workflow {item.workflow} is not in policy {policy.version}"
    findings = action_findings(item.action, workflow, policy)
    rule = workflow.actions.get(item.action.name)
    if rule is None or is_denied(findings, rule.on_out_of_bounds):
        detail = "; ".join(f.detail for f in findings) or "not allowed"
        return f"action_withdrawn: policy {policy.version}: {detail}"
    return None


def on_policy(
    pending: Pending | None, policy: LoadedPolicy, now: datetime
) -> tuple[Pending | None, list[Event]]:
    """A new policy in force closes an open item whose action it withdrew (out of the
    workflow, prohibited, out of bounds, or the workflow gone): nobody is left approving
    what can no longer run. Quorum changes wait for the next review (`on_review`)."""
    if pending is None or pending.status != PENDING:
        return pending, []
    withdrawn = _withdrawn(pending, policy)
    if withdrawn is None:
        return pending, []
    closed = replace(pending, status=CLOSED)
    # Caused by its own decision: an item closes once, so the id is the item's.
    return closed, [_closed(closed, pending.decision_event_id, now, withdrawn)]


def on_case_resolved(
    pending: Pending | None, resolved: CaseResolved
) -> tuple[Pending | None, list[Event]]:
    """A case resolved by any path closes its open item: nothing is left to approve, and
    a refund made by hand is not paid a second time."""
    if pending is None or pending.status != PENDING or pending.case_id != resolved.case_id:
        return pending, []
    closed = replace(pending, status=CLOSED)
    reason = f"case_resolved: resolved by {resolved.resolved_by} ({resolved.resolution_code})"
    return closed, [_closed(closed, resolved.event_id, resolved.occurred_at, reason)]


def _approvals(item: Pending) -> list[tuple[str, tuple[str, ...]]]:
    roles = (*item.approver_roles, *((),) * (len(item.approvers) - len(item.approver_roles)))
    return list(zip(item.approvers, roles, strict=True))


def _reject(
    pending: Pending, review: ReviewSubmitted, now: datetime
) -> tuple[Pending, list[Event]]:
    # One eligible rejection closes the item: a veto, whatever the quorum.
    item = replace(_taken(pending, review), status=REJECTED)
    completed = _completed(item, review, now, REJECTED, approvers=(review.actor,))
    return item, [_recorded(item, review, now), completed]


def _override(
    pending: Pending, review: ReviewSubmitted, policy: LoadedPolicy, now: datetime
) -> tuple[Pending, list[Event]]:
    """The operator's own action replaces the recommended one, under the same guardrails."""
    action = review.override_action
    if action is None:  # already refused by _check_review; narrows the type
        raise _Refusal("invalid_verdict", "an override carries the operator's action")
    entry = policy.policy.action(action.name)
    if entry is not None:
        # Facts of the case (an order id, an amount) come from the case, never the operator.
        action = bind_values(action, entry, lambda path: pending.case_bound.get(path))
    refusals = override_refusals(policy, pending.workflow, action, review.actor, review.roles)
    if refusals:  # what may be done before who may do it, as the guard would
        raise _Refusal(refusals[0].reason, refusals[0].detail)
    if entry is None:  # unreachable: override_refusal refuses an unknown action
        raise _Refusal("unknown_action", f"{action.name!r} is not in the action catalog")
    rule = policy.policy.workflows[pending.workflow].actions[action.name]
    need = quorum(policy, entry)
    # The override is a new proposal: approvals given to the old action do not carry over,
    # and its proposer may not approve it (four eyes see the same action).
    item = replace(
        _taken(pending, review),
        action=action,
        approvers=(),
        approver_roles=(),
        proposed_by=review.actor,
        approvals_required=need.people,
        eligible_roles=need.roles,
        suggest_only=rule.mode == "suggest",
        policy_version=policy.version,
    )
    return item, [_recorded(item, review, now)]


def _complete(
    item: Pending, review: ReviewSubmitted, now: datetime, events: list[Event]
) -> tuple[Pending, list[Event]]:
    item = replace(item, status=APPROVED)
    completed = _completed(item, review, now, APPROVED, approvers=item.approvers)
    events.append(completed)
    if not item.suggest_only:  # suggest: the operator acts by hand; casegate runs nothing
        events.append(
            _execution(
                completed.event_id,
                item.case_id,
                item.correlation_id,
                item.recommendation_id,
                item.action,
                "approved",
                ",".join(item.approvers),
                item.policy_version,
                item.workflow,
                now,
                tuple(Approval(actor=a, roles=r) for a, r in _approvals(item)),
            )
        )
    return item, events


# --- events ---------------------------------------------------------------------------


def _taken(pending: Pending, review: ReviewSubmitted) -> Pending:
    """The item with `review` in its redelivery guard."""
    missing = len(pending.reviews_seen) - len(pending.review_events)
    return replace(
        pending,
        reviews_seen=(*pending.reviews_seen, review.review_id),
        review_events=(*pending.review_events, *("",) * missing, review.event_id),
    )


def _taken_as(pending: Pending, review_id: str) -> str:
    """The event_id under which `review_id` was taken ("" when not recorded)."""
    index = pending.reviews_seen.index(review_id)
    return pending.review_events[index] if index < len(pending.review_events) else ""


def _recorded(item: Pending, review: ReviewSubmitted, now: datetime) -> ReviewRecorded:
    return ReviewRecorded(
        **caused_by(
            review.event_id,
            "ReviewRecorded",
            case_id=item.case_id,
            occurred_at=now,
            correlation_id=item.correlation_id,
        ),
        review_id=review.review_id,
        recommendation_id=item.recommendation_id,
        actor=review.actor,
        roles=review.roles,
        verdict=review.verdict,
        approvals_received=len(item.approvers),
        approvals_required=item.approvals_required,
        action=item.action,
        params_hash=action_digest(item.action),
        policy_version=item.policy_version,
        proposed_by=item.proposed_by,
        eligible_roles=item.eligible_roles,
        approvers=item.approvers,
    )


def _closed(item: Pending, cause_event_id: str, now: datetime, reason: str) -> ApprovalCompleted:
    """The item closed without a verdict; nothing runs."""
    return ApprovalCompleted(
        # Per item: one resolution closes every open item of its case.
        **caused_by(
            cause_event_id,
            f"ApprovalClosed:{item.recommendation_id}",
            case_id=item.case_id,
            occurred_at=now,
            correlation_id=item.correlation_id,
        ),
        recommendation_id=item.recommendation_id,
        outcome=CLOSED,
        approvers=item.approvers,
        action=item.action,
        reason=reason,
    )


def _completed(
    item: Pending,
    review: ReviewSubmitted,
    now: datetime,
    outcome: str,
    approvers: tuple[str, ...],
) -> ApprovalCompleted:
    return ApprovalCompleted(
        **caused_by(
            review.event_id,
            "ApprovalCompleted",
            case_id=item.case_id,
            occurred_at=now,
            correlation_id=item.correlation_id,
        ),
        recommendation_id=item.recommendation_id,
        outcome=outcome,
        approvers=approvers,
        action=item.action,
    )


def _execution(
    cause_event_id: str,
    case_id: str,
    correlation_id: str | None,
    recommendation_id: str,
    action: ActionSpec,
    mode: str,
    requested_by: str,
    policy_version: str,
    workflow: str | None,
    now: datetime,
    approvals: tuple[Approval, ...] = (),
) -> ExecutionRequested:
    return ExecutionRequested(
        **caused_by(
            cause_event_id,
            "ExecutionRequested",
            case_id=case_id,
            occurred_at=now,
            correlation_id=correlation_id,
        ),
        # From the authorizing event (decision or ApprovalCompleted): a redelivered cause
        # yields the same execution id, which the adapter receives as its idempotency key.
        execution_id=derived_event_id(cause_event_id, "execution"),
        recommendation_id=recommendation_id,
        action=action,
        mode=mode,
        requested_by=requested_by,
        policy_version=policy_version,
        # The executor re-checks the action against this workflow in the current policy.
        workflow=workflow,
        approvals=approvals,
    )


def _denied(review: ReviewSubmitted, now: datetime, reason: str, detail: str) -> ReviewDenied:
    return ReviewDenied(
        **caused_by(
            review.event_id,
            "ReviewDenied",
            case_id=review.case_id,
            occurred_at=now,
            correlation_id=review.correlation_id,
        ),
        review_id=review.review_id,
        recommendation_id=review.recommendation_id,
        actor=review.actor,
        reason=reason,
        detail=detail,
    )
