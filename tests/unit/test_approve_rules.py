"""Given an approval item, when a decision, review or tick arrives, then the item's new
state and the events the approve processor produces."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from policy.loader import LoadedPolicy, default_policy_path, load_policy_file, load_policy_text
from processors.approve_rules import (
    Pending,
    on_case_resolved,
    on_decision,
    on_expired,
    on_policy,
    on_tick,
)
from processors.approve_rules import on_review as rule_on_review
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    CaseResolved,
    Event,
    ExecutionRequested,
    GuardrailDecided,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
    action_digest,
    derived_event_id,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
EXPIRES = NOW + timedelta(hours=8)
POLICY: LoadedPolicy = load_policy_file(default_policy_path())

REFUND = ActionSpec(name="refund_payment", params={"amount": 49.0, "order_id": "ORD-88213"})
PLAN_PRO = ActionSpec(name="change_plan", params={"plan": "pro"})
PLAN_BASIC = ActionSpec(name="change_plan", params={"plan": "basic"})
# What the case holds at the paths the default catalog binds (refund amount and order).
CASE_BOUND = {"attributes.amount": 49.0, "attributes.order_id": "ORD-88213"}


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
        case_bound=dict(CASE_BOUND),
    )


def pending(action: ActionSpec = REFUND, **overrides: object) -> Pending:
    """An open item as on_decision makes it (refund: two approvers needed)."""
    approvals = 2 if action is REFUND else 1
    item, _ = on_decision(decision(action, approvals=approvals), NOW)
    assert item is not None
    return replace(item, **overrides)  # type: ignore[arg-type]


# A review's binding fields as the console fills them: the item as it is when reviewed.
SHOWN = "<the item as shown>"


def on_review(
    item: Pending | None, rev: ReviewSubmitted, policy: LoadedPolicy, now: datetime
) -> tuple[Pending | None, list[Event]]:
    """The rule, with a review marked SHOWN naming the item's current action, digest and
    version (what the console showed its operator)."""
    if item is not None and rev.action_name == SHOWN:
        rev = replace(
            rev,
            action_name=item.action.name,
            params_hash=action_digest(item.action),
            policy_version=item.policy_version,
        )
    return rule_on_review(item, rev, policy, now)


def review(
    actor: str = "alice",
    roles: tuple[str, ...] = ("supervisor",),
    verdict: str = "approve",
    review_id: str | None = None,
    override: ActionSpec | None = None,
    case_id: str = "c1",
    action_name: str | None = SHOWN,
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
        action_name=action_name,
        params_hash=None if action_name in (None, SHOWN) else "?",
        policy_version=None if action_name in (None, SHOWN) else "?",
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
        case_bound=CASE_BOUND,  # kept for an override's bound parameters
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


def test_a_valid_override_is_a_new_proposal_that_another_operator_must_approve() -> None:
    after, events = on_review(
        pending(PLAN_PRO), review(verdict="override", override=PLAN_BASIC), POLICY, LATER
    )

    assert after is not None and (after.status, after.action) == ("pending", PLAN_BASIC)
    assert (after.approvers, after.proposed_by) == ((), "alice")
    [recorded] = events
    assert isinstance(recorded, ReviewRecorded)
    # The queue learns exactly what now waits for approval, and who proposed it.
    assert (recorded.action, recorded.params_hash, recorded.proposed_by) == (
        PLAN_BASIC,
        action_digest(PLAN_BASIC),
        "alice",
    )
    assert recorded.approvals_received == 0

    refused = on_review(after, review("alice", review_id="again"), POLICY, LATER)[1]
    assert denial(refused) == "proposer_cannot_approve"

    done, events = on_review(after, review("bob", ("supervisor",)), POLICY, LATER)
    assert done is not None and done.status == "approved"
    assert kinds(events) == ["ReviewRecorded", "ApprovalCompleted", "ExecutionRequested"]
    completed, request = events[1], events[2]
    assert isinstance(completed, ApprovalCompleted) and completed.action == PLAN_BASIC
    assert isinstance(request, ExecutionRequested) and request.action == PLAN_BASIC
    assert [(a.actor, a.roles) for a in request.approvals] == [("bob", ("supervisor",))]


def test_an_override_takes_case_bound_parameters_from_the_case_not_the_operator() -> None:
    # The scenario: the AI proposed refund(20, ORD-1) for the case; a supervisor
    # overrides to refund(200, ORD-777). Amount and order are bound to the case.
    item = pending(REFUND, case_bound={"attributes.amount": 20.0, "attributes.order_id": "ORD-1"})
    forged = ActionSpec(name="refund_payment", params={"amount": 200.0, "order_id": "ORD-777"})

    after, events = on_review(item, review(verdict="override", override=forged), POLICY, LATER)

    assert after is not None
    assert after.action == ActionSpec(
        name="refund_payment", params={"amount": 20.0, "order_id": "ORD-1"}
    )
    [recorded] = events
    assert isinstance(recorded, ReviewRecorded) and recorded.action == after.action


def test_an_approval_of_what_the_item_no_longer_holds_is_refused() -> None:
    # bob opened the item while it held the AI's plan change; alice then overrode it.
    item = pending(PLAN_PRO)
    shown_to_bob = review("bob", ("supervisor",), action_name=PLAN_PRO.name, review_id="bob-1")
    shown_to_bob = replace(
        shown_to_bob, params_hash=action_digest(PLAN_PRO), policy_version=item.policy_version
    )
    overridden, _ = on_review(item, review(verdict="override", override=PLAN_BASIC), POLICY, LATER)

    after, events = on_review(overridden, shown_to_bob, POLICY, LATER)

    assert denial(events) == "stale_review"
    assert after == overridden


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"action_name": None, "params_hash": None, "policy_version": None}, "unbound_review"),
        ({"params_hash": action_digest(PLAN_BASIC)}, "stale_review"),
        ({"action_name": "refund_payment"}, "stale_review"),
        ({"policy_version": "2020.1"}, "policy_changed"),
    ],
    ids=["unbound", "other-params", "other-action", "other-policy"],
)
def test_a_review_must_name_the_items_action_digest_and_policy(
    changes: dict[str, object], reason: str
) -> None:
    item = pending(PLAN_PRO)
    rev = replace(
        review(action_name=PLAN_PRO.name),
        params_hash=action_digest(PLAN_PRO),
        policy_version=item.policy_version,
    )
    assert kinds(on_review(item, rev, POLICY, LATER)[1])[0] == "ReviewRecorded"

    after, events = on_review(item, replace(rev, **changes), POLICY, LATER)  # type: ignore[arg-type]

    assert denial(events) == reason
    assert after == item


def test_quorum_and_roles_are_rechecked_under_the_policy_in_force_at_completion() -> None:
    # Opened needing 2 of supervisor/finance_lead; the policy now wants 3 finance leads.
    stricter = load_policy_text(
        POLICY.text.replace(
            "approvals: {count: 2, roles: [supervisor, finance_lead]}",
            "approvals: {count: 3, roles: [finance_lead]}",
        ).replace(f'version: "{POLICY.version}"', 'version: "stricter.1"')
    )
    item, _ = on_review(pending(), review("alice", ("supervisor",)), POLICY, LATER)
    assert item is not None

    after, events = on_review(item, review("bob", ("finance_lead",)), stricter, LATER)

    assert after is not None and after.status == "pending"
    assert kinds(events) == ["ReviewRecorded"]  # no ApprovalCompleted, no ExecutionRequested
    assert (after.approvers, after.approvals_required, after.eligible_roles) == (
        ("bob",),
        3,
        ("finance_lead",),
    )
    assert after.policy_version == "stricter.1"


def test_an_action_the_policy_in_force_prohibits_closes_the_item_at_quorum() -> None:
    banned = load_policy_text(
        POLICY.text.replace("change_plan: {mode: approve}", "change_plan: {mode: prohibited}")
    )
    assert banned.text != POLICY.text

    after, events = on_review(pending(PLAN_PRO), review(), banned, LATER)

    assert after is not None and after.status == "closed"
    assert kinds(events) == ["ReviewRecorded", "ApprovalCompleted"]
    closed = events[1]
    assert isinstance(closed, ApprovalCompleted) and closed.outcome == "closed"
    assert closed.reason is not None and closed.reason.startswith("action_withdrawn")


def test_a_new_policy_that_withdraws_the_action_closes_the_open_item_at_once() -> None:
    banned = load_policy_text(
        POLICY.text.replace("change_plan: {mode: approve}", "change_plan: {mode: prohibited}")
    )
    item = pending(PLAN_PRO)

    after, events = on_policy(item, banned, LATER)

    assert after is not None and after.status == "closed"
    [closed] = events
    assert isinstance(closed, ApprovalCompleted) and closed.outcome == "closed"
    assert closed.reason is not None and closed.reason.startswith("action_withdrawn")
    assert closed.causation_id == item.decision_event_id
    # The same policy again, or one that still allows the action, changes nothing.
    assert on_policy(after, banned, LATER) == (after, [])
    assert on_policy(item, POLICY, LATER) == (item, [])
    # A later review of the closed item is refused as closed.
    _, refused = on_review(after, review(), POLICY, LATER)
    assert denial(refused) == "item_closed"


def test_a_resolved_case_closes_its_open_item_and_later_reviews_are_refused() -> None:
    resolved = CaseResolved(
        event_id="resolved-1",
        case_id="c1",
        occurred_at=LATER,
        resolved_by="agent-7",
        resolution_code="refunded",
        category="refund_request",
        actions_taken=(),
    )

    after, events = on_case_resolved(pending(), resolved)

    assert after is not None and after.status == "closed"
    [closed] = events
    assert isinstance(closed, ApprovalCompleted)
    assert (closed.outcome, closed.causation_id) == ("closed", "resolved-1")
    assert closed.reason is not None and closed.reason.startswith("case_resolved")
    assert denial(on_review(after, review(), POLICY, LATER)[1]) == "item_closed"
    assert on_case_resolved(after, resolved) == (after, [])


@pytest.mark.parametrize(
    ("override", "case", "reason"),
    [
        (ActionSpec(name="close_account"), CASE_BOUND, "action_prohibited"),
        # Amount and order are bound: the case's values are the ones judged.
        (
            ActionSpec(name="refund_payment"),
            {"attributes.amount": 350.0, "attributes.order_id": "ORD-1"},
            "param_out_of_bounds",
        ),
        (
            ActionSpec(name="refund_payment"),
            {"attributes.amount": 900.0, "attributes.order_id": "ORD-1"},
            "param_out_of_bounds",
        ),
        (
            ActionSpec(name="refund_payment"),
            {"attributes.amount": 10.0, "attributes.order_id": "nope"},
            "param_invalid",
        ),
        (
            # An operator cannot supply a fact the case lacks.
            ActionSpec(name="refund_payment", params={"amount": 10.0, "order_id": "ORD-1"}),
            {},
            "param_invalid",
        ),
        (ActionSpec(name="wire_money"), CASE_BOUND, "unknown_action"),
        (
            ActionSpec(name="reset_password", params={"method": "email_link"}),
            CASE_BOUND,
            "action_not_in_workflow",
        ),
    ],
    ids=[
        "prohibited",
        "outside-workflow-bound",
        "outside-catalog-bound",
        "malformed-order-id",
        "fact-not-in-case",
        "unknown-action",
        "not-in-workflow",
    ],
)
def test_an_override_passes_the_same_guardrails_as_a_model_action(
    override: ActionSpec, case: dict[str, object], reason: str
) -> None:
    item = pending(PLAN_PRO, case_bound=case)

    after, events = on_review(item, review(verdict="override", override=override), POLICY, LATER)

    assert denial(events) == reason
    assert after == item


def test_an_override_needing_two_approvals_waits_for_two_operators_other_than_its_proposer() -> (
    None
):
    refund = ActionSpec(name="refund_payment", params={"amount": 20.0, "order_id": "ORD-5"})

    switched, events = on_review(
        pending(PLAN_PRO), review(verdict="override", override=refund), POLICY, LATER
    )

    assert switched is not None
    # Amount and order are bound to the case: its values, whatever the operator typed.
    bound = ActionSpec(name="refund_payment", params={"amount": 49.0, "order_id": "ORD-88213"})
    assert (switched.status, switched.action, switched.approvers) == ("pending", bound, ())
    assert (switched.approvals_required, switched.eligible_roles) == (
        2,
        ("supervisor", "finance_lead"),
    )
    assert kinds(events) == ["ReviewRecorded"]

    half, events = on_review(switched, review("bob", ("finance_lead",)), POLICY, LATER)
    assert half is not None and half.status == "pending"
    done, events = on_review(half, review("carol", ("supervisor",)), POLICY, LATER)

    assert done is not None and done.status == "approved"
    request = events[-1]
    assert isinstance(request, ExecutionRequested)
    assert (request.action, request.requested_by) == (bound, "bob,carol")


def test_an_override_with_a_suggest_only_action_is_recorded_but_not_run() -> None:
    escalate = ActionSpec(name="escalate_to_specialist", params={"team": "finance"})

    proposed, _ = on_review(
        pending(PLAN_PRO), review(verdict="override", override=escalate), POLICY, LATER
    )
    after, events = on_review(proposed, review("bob", ("supervisor",)), POLICY, LATER)

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
