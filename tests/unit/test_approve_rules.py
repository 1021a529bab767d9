"""Given an approval item, when a decision, review or tick arrives, then the item's new
state and the events the approve processor produces."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from policy.loader import LoadedPolicy, default_policy_path, load_policy_file, load_policy_text
from processors.approve_rules import Pending, on_decision, on_expired, on_review, on_tick
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    Event,
    ExecutionRequested,
    GuardrailDecided,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
    derived_event_id,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
EXPIRES = NOW + timedelta(hours=8)
POLICY: LoadedPolicy = load_policy_file(default_policy_path())

REFUND = ActionSpec(name="refund_payment", params={"amount": 49.0, "order_id": "ORD-88213"})
PLAN_PRO = ActionSpec(name="change_plan", params={"plan": "pro"})
PLAN_BASIC = ActionSpec(name="change_plan", params={"plan": "basic"})


def decision(
    action: ActionSpec = REFUND,
    outcome: str = "approval_required",
    approvals: int = 2,
    roles: tuple[str, ...] = ("supervisor", "finance_lead"),
    reasons: tuple[str, ...] = ("needs_approval",),
) -> GuardrailDecided:
    return GuardrailDecided(
        event_id="decision-event-1",
        case_id="c1",
        occurred_at=NOW,
        causation_id="rec-event-1",
        correlation_id="case-event-1",
        decision_id="d1",
        recommendation_id="r1",
        workflow="billing",
        phase="assisted",
        outcome=outcome,
        reasons=reasons,
        action=action,
        policy_version=POLICY.version,
        approvals_required=approvals if outcome == "approval_required" else 0,
        eligible_roles=roles if outcome == "approval_required" else (),
        expires_at=EXPIRES if outcome == "approval_required" else None,
    )


def pending(action: ActionSpec = REFUND, **overrides: object) -> Pending:
    """An open item as on_decision makes it (refund: two approvers needed)."""
    approvals = 2 if action is REFUND else 1
    item, _ = on_decision(decision(action, approvals=approvals), NOW)
    assert item is not None
    return replace(item, **overrides)  # type: ignore[arg-type]


def review(
    actor: str = "alice",
    roles: tuple[str, ...] = ("supervisor",),
    verdict: str = "approve",
    review_id: str | None = None,
    override: ActionSpec | None = None,
    case_id: str = "c1",
) -> ReviewSubmitted:
    rid = review_id or f"rev-{actor}-{verdict}"
    return ReviewSubmitted(
        event_id=f"event-{rid}",
        case_id=case_id,
        occurred_at=NOW,
        correlation_id="case-event-1",
        review_id=rid,
        recommendation_id="r1",
        actor=actor,
        roles=roles,
        verdict=verdict,
        override_action=override,
    )


def kinds(events: list[Event]) -> list[str]:
    return [e.event_type for e in events]


def denial(events: list[Event]) -> str:
    [denied] = events
    assert isinstance(denied, ReviewDenied)
    return denied.reason


# --- decisions ---------------------------------------------------------------------------


def test_approval_required_opens_an_item_and_emits_nothing() -> None:
    item, events = on_decision(decision(), NOW)

    assert events == []
    assert item == Pending(
        recommendation_id="r1",
        case_id="c1",
        decision_event_id="decision-event-1",
        correlation_id="case-event-1",
        workflow="billing",
        action=REFUND,
        approvals_required=2,
        eligible_roles=("supervisor", "finance_lead"),
        expires_at=EXPIRES,
        policy_version=POLICY.version,
    )


def test_auto_authorized_requests_execution_by_policy() -> None:
    item, events = on_decision(decision(PLAN_PRO, outcome="auto_authorized"), NOW)

    assert item is None
    [request] = events
    assert isinstance(request, ExecutionRequested)
    assert (request.mode, request.requested_by, request.action) == ("auto", "policy", PLAN_PRO)
    assert request.execution_id == derived_event_id("decision-event-1", "execution")
    assert request.causation_id == "decision-event-1"
    assert request.workflow == "billing"  # the executor re-checks under this workflow


@pytest.mark.parametrize("outcome", ["shadowed", "denied", "out_of_scope"])
def test_other_outcomes_open_nothing(outcome: str) -> None:
    assert on_decision(decision(outcome=outcome), NOW) == (None, [])


def test_a_redelivered_decision_keeps_the_approvals_already_given() -> None:
    item = pending(approvers=("alice",))

    assert on_decision(decision(), LATER, existing=item) == (item, [])


# --- approve -----------------------------------------------------------------------------


def test_one_eligible_approval_completes_a_one_approval_item() -> None:
    item, events = on_review(pending(PLAN_PRO), review(), POLICY, LATER)

    assert item is not None and item.status == "approved"
    assert kinds(events) == ["ReviewRecorded", "ApprovalCompleted", "ExecutionRequested"]
    recorded, completed, request = events
    assert isinstance(recorded, ReviewRecorded) and (
        recorded.approvals_received,
        recorded.approvals_required,
    ) == (1, 1)
    assert isinstance(completed, ApprovalCompleted)
    assert (completed.outcome, completed.approvers, completed.action) == (
        "approved",
        ("alice",),
        PLAN_PRO,
    )
    assert isinstance(request, ExecutionRequested)
    assert (request.mode, request.requested_by, request.action) == ("approved", "alice", PLAN_PRO)
    assert request.causation_id == completed.event_id
    assert request.workflow == "billing"


def test_two_distinct_approvers_reach_the_quorum_of_two() -> None:
    first, events = on_review(pending(), review("alice"), POLICY, LATER)
    assert first is not None and first.status == "pending"
    assert kinds(events) == ["ReviewRecorded"]
    [recorded] = events
    assert isinstance(recorded, ReviewRecorded) and recorded.approvals_received == 1

    second, events = on_review(first, review("bob", ("finance_lead",)), POLICY, LATER)

    assert second is not None and second.status == "approved"
    assert second.approvers == ("alice", "bob")
    assert kinds(events) == ["ReviewRecorded", "ApprovalCompleted", "ExecutionRequested"]
    request = events[-1]
    assert isinstance(request, ExecutionRequested) and request.requested_by == "alice,bob"


def test_the_same_operator_counts_once() -> None:
    first, _ = on_review(pending(), review("alice", review_id="rev-1"), POLICY, LATER)

    second, events = on_review(first, review("alice", review_id="rev-2"), POLICY, LATER)

    assert denial(events) == "duplicate_approver"
    assert second == first


def test_an_operator_without_an_eligible_role_is_refused() -> None:
    item = pending()

    after, events = on_review(item, review("carol", ("agent",)), POLICY, LATER)

    assert denial(events) == "role_not_eligible"
    assert after == item


def test_a_suggest_only_item_completes_without_execution() -> None:
    item = pending(PLAN_PRO, suggest_only=True)

    after, events = on_review(item, review(), POLICY, LATER)

    assert after is not None and after.status == "approved"
    assert kinds(events) == ["ReviewRecorded", "ApprovalCompleted"]


# --- refusals ------------------------------------------------------------------------------


def test_a_review_of_an_unknown_item_is_refused() -> None:
    after, events = on_review(None, review(), POLICY, LATER)

    assert after is None
    assert denial(events) == "unknown_item"


def test_a_review_naming_another_case_is_refused_as_unknown() -> None:
    assert denial(on_review(pending(), review(case_id="c2"), POLICY, LATER)[1]) == "unknown_item"


@pytest.mark.parametrize("status", ["approved", "rejected", "expired"])
def test_a_review_of_a_closed_item_is_refused(status: str) -> None:
    item = pending(status=status)

    after, events = on_review(item, review(), POLICY, LATER)

    assert denial(events) == "item_closed"
    assert after == item


def test_a_review_past_expiry_is_refused_and_expires_the_item() -> None:
    after, events = on_review(pending(), review(), POLICY, EXPIRES)

    assert after is not None and after.status == "expired"
    assert kinds(events) == ["ReviewDenied", "ApprovalExpired"]
    assert isinstance(events[0], ReviewDenied) and events[0].reason == "expired"


@pytest.mark.parametrize(
    ("verdict", "override"),
    [("maybe", None), ("override", None), ("approve", PLAN_BASIC)],
    ids=["unknown-verdict", "override-without-action", "approve-with-action"],
)
def test_malformed_verdicts_are_refused(verdict: str, override: ActionSpec | None) -> None:
    events = on_review(pending(), review(verdict=verdict, override=override), POLICY, LATER)[1]

    assert denial(events) == "invalid_verdict"


# --- reject --------------------------------------------------------------------------------


def test_one_eligible_rejection_closes_the_item() -> None:
    first, _ = on_review(pending(), review("alice"), POLICY, LATER)

    after, events = on_review(first, review("bob", ("finance_lead",), "reject"), POLICY, LATER)

    assert after is not None and after.status == "rejected"
    assert kinds(events) == ["ReviewRecorded", "ApprovalCompleted"]
    completed = events[1]
    assert isinstance(completed, ApprovalCompleted)
    assert (completed.outcome, completed.approvers) == ("rejected", ("bob",))


# --- override ------------------------------------------------------------------------------


def test_a_valid_override_runs_the_operators_action() -> None:
    after, events = on_review(
        pending(PLAN_PRO), review(verdict="override", override=PLAN_BASIC), POLICY, LATER
    )

    assert after is not None and (after.status, after.action) == ("approved", PLAN_BASIC)
    assert kinds(events) == ["ReviewRecorded", "ApprovalCompleted", "ExecutionRequested"]
    completed, request = events[1], events[2]
    assert isinstance(completed, ApprovalCompleted) and completed.action == PLAN_BASIC
    assert isinstance(request, ExecutionRequested) and request.action == PLAN_BASIC


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        (ActionSpec(name="close_account"), "action_prohibited"),
        (
            ActionSpec(name="refund_payment", params={"amount": 350.0, "order_id": "ORD-1"}),
            "param_out_of_bounds",
        ),
        (
            ActionSpec(name="refund_payment", params={"amount": 900.0, "order_id": "ORD-1"}),
            "param_out_of_bounds",
        ),
        (
            ActionSpec(name="refund_payment", params={"amount": 10.0, "order_id": "nope"}),
            "param_invalid",
        ),
        (ActionSpec(name="wire_money"), "unknown_action"),
        (
            ActionSpec(name="reset_password", params={"method": "email_link"}),
            "action_not_in_workflow",
        ),
    ],
    ids=[
        "prohibited",
        "outside-workflow-bound",
        "outside-catalog-bound",
        "malformed-order-id",
        "unknown-action",
        "not-in-workflow",
    ],
)
def test_an_override_passes_the_same_guardrails_as_a_model_action(
    override: ActionSpec, reason: str
) -> None:
    item = pending(PLAN_PRO)

    after, events = on_review(item, review(verdict="override", override=override), POLICY, LATER)

    assert denial(events) == reason
    assert after == item


def test_an_override_needing_two_approvals_waits_with_the_operator_as_first_approver() -> None:
    refund = ActionSpec(name="refund_payment", params={"amount": 20.0, "order_id": "ORD-5"})

    switched, events = on_review(
        pending(PLAN_PRO), review(verdict="override", override=refund), POLICY, LATER
    )

    assert switched is not None
    assert (switched.status, switched.action, switched.approvers) == ("pending", refund, ("alice",))
    assert (switched.approvals_required, switched.eligible_roles) == (
        2,
        ("supervisor", "finance_lead"),
    )
    assert kinds(events) == ["ReviewRecorded"]

    done, events = on_review(switched, review("bob", ("finance_lead",)), POLICY, LATER)

    assert done is not None and done.status == "approved"
    request = events[-1]
    assert isinstance(request, ExecutionRequested)
    assert (request.action, request.requested_by) == (refund, "alice,bob")


def test_an_override_with_a_suggest_only_action_is_recorded_but_not_run() -> None:
    escalate = ActionSpec(name="escalate_to_specialist", params={"team": "finance"})

    after, events = on_review(
        pending(PLAN_PRO), review(verdict="override", override=escalate), POLICY, LATER
    )

    assert after is not None and after.status == "approved"
    assert kinds(events) == ["ReviewRecorded", "ApprovalCompleted"]


def test_an_override_by_someone_who_may_not_approve_the_new_action_is_refused() -> None:
    # bob (finance_lead) may decide on the plan change, but in this policy only a
    # supervisor may approve refunds.
    item = pending(PLAN_PRO)
    refund = ActionSpec(name="refund_payment", params={"amount": 20.0, "order_id": "ORD-5"})
    narrower = load_policy_text(
        POLICY.text.replace(
            "approvals: {count: 2, roles: [supervisor, finance_lead]}",
            "approvals: {count: 2, roles: [supervisor]}",
        )
    )

    events = on_review(
        item, review("bob", ("finance_lead",), "override", override=refund), narrower, LATER
    )[1]

    assert denial(events) == "role_not_eligible"


# --- expiry ----------------------------------------------------------------------------------


def test_tick_before_expiry_changes_nothing() -> None:
    item = pending()

    assert on_tick(item, EXPIRES - timedelta(seconds=1)) == (item, [])


def test_tick_at_expiry_expires_the_item_with_an_event() -> None:
    item, _ = on_review(pending(), review("alice"), POLICY, LATER)

    after, events = on_tick(item, EXPIRES)

    assert after is not None and after.status == "expired"
    [expired] = events
    assert isinstance(expired, ApprovalExpired)
    assert (expired.expired_at, expired.approvals_received) == (EXPIRES, 1)
    assert expired.causation_id == "decision-event-1"


@pytest.mark.parametrize("status", ["approved", "rejected", "expired"])
def test_tick_on_a_closed_item_changes_nothing(status: str) -> None:
    item = pending(status=status)

    assert on_tick(item, EXPIRES + timedelta(days=1)) == (item, [])


def test_an_expiry_read_back_closes_the_open_item() -> None:
    [expired] = on_tick(pending(), EXPIRES)[1]
    assert isinstance(expired, ApprovalExpired)

    closed = on_expired(pending(approvers=("alice",)), expired)

    assert closed is not None and (closed.status, closed.approvers) == ("expired", ("alice",))


@pytest.mark.parametrize("status", ["approved", "rejected", "expired"])
def test_an_expiry_read_back_leaves_a_closed_item_alone(status: str) -> None:
    [expired] = on_tick(pending(), EXPIRES)[1]
    assert isinstance(expired, ApprovalExpired)
    item = pending(status=status)

    assert on_expired(item, expired) == item
    assert on_expired(None, expired) is None


def test_tick_and_late_review_expire_with_the_same_event_id() -> None:
    by_tick = on_tick(pending(), EXPIRES)[1]
    by_review = on_review(pending(), review(), POLICY, EXPIRES)[1]

    assert by_tick[0].event_id == by_review[1].event_id


# --- idempotence -----------------------------------------------------------------------------


def test_ids_are_derived_so_a_replayed_review_yields_the_same_events() -> None:
    item = pending(PLAN_PRO)

    _, first = on_review(item, review(), POLICY, LATER)
    _, again = on_review(item, review(), POLICY, LATER)

    assert first == again
    assert first[0].event_id == derived_event_id("event-rev-alice-approve", "ReviewRecorded")
    request = first[-1]
    assert isinstance(request, ExecutionRequested)
    assert request.execution_id == derived_event_id(first[1].event_id, "execution")


def test_a_redelivered_review_after_it_was_taken_produces_nothing() -> None:
    first, _ = on_review(pending(), review("alice"), POLICY, LATER)

    assert on_review(first, review("alice"), POLICY, LATER) == (first, [])


def test_the_same_review_under_another_event_id_is_refused_as_a_replay() -> None:
    # Given alice's review taken once (one approval of two)
    first, _ = on_review(pending(), review("alice"), POLICY, LATER)
    assert first is not None
    # When the very same review comes again under a new event id (a replay, not a
    # redelivery: a redelivery carries the same event id)
    replayed = replace(review("alice"), event_id="event-replayed")
    after, events = on_review(first, replayed, POLICY, LATER)

    # Then it is refused with its reason, and the item keeps its one approval
    assert denial(events) == "duplicate_review"
    assert after == first and after.approvers == ("alice",)


def test_items_stored_before_event_ids_were_kept_treat_a_known_review_as_redelivered() -> None:
    first, _ = on_review(pending(), review("alice"), POLICY, LATER)
    assert first is not None
    legacy = replace(first, review_events=())

    assert on_review(legacy, replace(review("alice"), event_id="other"), POLICY, LATER) == (
        legacy,
        [],
    )
    later, _ = on_review(legacy, review("bob", ("finance_lead",)), POLICY, LATER)
    assert later is not None and later.review_events == ("", "event-rev-bob-approve")


def test_an_override_in_a_workflow_removed_from_the_policy_is_refused() -> None:
    item = pending(PLAN_PRO, workflow="retired")

    events = on_review(item, review(verdict="override", override=PLAN_BASIC), POLICY, LATER)[1]

    assert denial(events) == "unknown_workflow"
