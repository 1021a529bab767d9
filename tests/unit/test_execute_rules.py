"""Given an execution request and the current policy, when the executor checks it and the
adapter answers, then the refusal or the outcome events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from policy.loader import LoadedPolicy, default_policy_path, load_policy_file, load_policy_text
from policy.model import Action
from processors.execute_rules import (
    UNENCODABLE_RESULT,
    AdapterResult,
    UnencodableResultError,
    authorize_execution,
    carried,
    deciding_policy_refusal,
    outcome_events,
    refused_event,
    rollback_execution_id,
    rollback_request,
    schema_result,
)
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    Approval,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    derived_event_id,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY: LoadedPolicy = load_policy_file(default_policy_path())

REFUND = ActionSpec(name="refund_payment", params={"amount": 49.0, "order_id": "ORD-88213"})
PLAN = ActionSpec(name="change_plan", params={"plan": "pro"})
RESET = ActionSpec(name="reset_password", params={"method": "email_link"})
APPROVALS = (
    Approval(actor="alice", roles=("supervisor",)),
    Approval(actor="bob", roles=("finance_lead",)),
)


def request(action: ActionSpec = REFUND, mode: str = "approved") -> ExecutionRequested:
    return ExecutionRequested(
        event_id="req-event-1",
        case_id="c1",
        occurred_at=NOW,
        causation_id="approval-1",
        correlation_id="case-event-1",
        execution_id="exec-1",
        recommendation_id="r1",
        action=action,
        mode=mode,
        requested_by="alice,bob",
        policy_version=POLICY.version,
        approvals=APPROVALS if mode == "approved" else (),
    )


def edited(old: str, new: str) -> LoadedPolicy:
    """The default policy with one textual edit, as if republished since the request."""
    if old not in POLICY.text:
        raise LookupError(old)
    return load_policy_text(POLICY.text.replace(old, new))


def catalog(name: str) -> Action:
    action = POLICY.policy.action(name)
    if action is None:
        raise LookupError(name)
    return action


# --- authorize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "workflow"),
    [
        (request(), "billing"),
        (request(PLAN), "billing"),
        (request(RESET, "auto"), "identity_access"),
    ],
    ids=["approved-refund", "approved-plan-change", "auto-reset-in-bounded"],
)
def test_requests_inside_the_current_policy_are_authorized(
    req: ExecutionRequested, workflow: str | None
) -> None:
    assert authorize_execution(req, POLICY, workflow) is None


def test_the_workflow_a_request_carries_is_checked_when_none_is_passed() -> None:
    carried = replace(request(), workflow="billing")
    prohibited = edited(
        "refund_payment:\n        mode: approve", "refund_payment:\n        mode: prohibited"
    )

    assert authorize_execution(carried, POLICY) is None
    reason = authorize_execution(carried, prohibited)
    assert reason is not None and reason.startswith("action_prohibited")
    # Fails closed: without a workflow nothing proves the run allowed, prohibited or not.
    for policy in (POLICY, prohibited):
        reason = authorize_execution(replace(carried, workflow=None), policy)
        assert reason is not None and reason.startswith("no_workflow")


def test_a_request_without_a_workflow_is_refused_even_for_an_action_prohibited_everywhere() -> None:
    # The scenario: mode=approved, workflow=null, close_account was authorized.
    req = replace(request(ActionSpec(name="close_account")), workflow=None)

    reason = authorize_execution(req, POLICY)

    assert reason is not None and reason.startswith("no_workflow")


@pytest.mark.parametrize(
    ("approvals", "policy"),
    [
        ((), POLICY),
        ((Approval(actor="alice", roles=("supervisor",)),), POLICY),
        (
            (
                Approval(actor="alice", roles=("agent",)),
                Approval(actor="bob", roles=("agent",)),
            ),
            POLICY,
        ),
        (
            APPROVALS,
            edited(
                "approvals: {count: 2, roles: [supervisor, finance_lead]}",
                "approvals: {count: 3, roles: [finance_lead]}",
            ),
        ),
    ],
    ids=["none", "one-of-two", "wrong-roles", "policy-raised-quorum"],
)
def test_an_approved_run_needs_the_quorum_and_roles_of_the_policy_in_force(
    approvals: tuple[Approval, ...], policy: LoadedPolicy
) -> None:
    req = replace(request(), approvals=approvals)

    reason = authorize_execution(req, policy, "billing")

    assert reason is not None and reason.startswith("quorum_not_met")


@pytest.mark.parametrize(
    ("req", "policy", "workflow", "code"),
    [
        (
            request(),
            edited(
                "      refund_payment:\n        mode: approve",
                "      refund_payment:\n        mode: prohibited",
            ),
            "billing",
            "action_prohibited",
        ),
        (
            request(),
            edited("bounds: {amount: {max: 200}}", "bounds: {amount: {max: 40}}"),
            "billing",
            "param_out_of_bounds",
        ),
        (request(), edited("phase: assisted", "phase: shadow"), "billing", "phase_shadow"),
        (request(), POLICY, "nonexistent", "unknown_workflow"),
        (
            request(PLAN),
            edited(
                "      change_plan: {mode: approve}\n      escalate_to_specialist",
                "      change_plan: {mode: suggest}\n      escalate_to_specialist",
            ),
            "billing",
            "suggest_only",
        ),
        (
            request(RESET, "auto"),
            edited("phase: bounded", "phase: assisted"),
            "identity_access",
            "not_auto",
        ),
        (
            request(RESET, "auto"),
            edited("reset_password: {mode: auto}", "reset_password: {mode: approve}"),
            "identity_access",
            "not_auto",
        ),
        (request(REFUND, "approved"), POLICY, "identity_access", "action_not_in_workflow"),
        (request(ActionSpec(name="teleport")), POLICY, "billing", "unknown_action"),
        (request(REFUND, "whenever"), POLICY, "billing", "invalid_mode"),
        (
            request(
                ActionSpec(name="refund_payment", params={"amount": 900.0, "order_id": "ORD-1"})
            ),
            POLICY,
            "billing",
            "param_out_of_bounds",
        ),
        (request(), POLICY, None, "no_workflow"),
    ],
    ids=[
        "prohibited-since-request",
        "bound-narrowed-since",
        "workflow-back-in-shadow",
        "workflow-removed",
        "now-suggest-only",
        "auto-but-phase-demoted",
        "auto-but-mode-changed",
        "not-in-this-workflow",
        "unknown-action",
        "invalid-mode",
        "catalog-bound",
        "no-workflow-fails-closed",
    ],
)
def test_requests_the_current_policy_no_longer_allows_are_refused(
    req: ExecutionRequested, policy: LoadedPolicy, workflow: str | None, code: str
) -> None:
    reason = authorize_execution(req, policy, workflow)

    assert reason is not None and reason.split(":")[0] == code, reason


def test_a_refused_request_becomes_a_non_retriable_failure() -> None:
    failed = refused_event(request(), "action_prohibited: no", NOW)

    assert (failed.error_class, failed.retriable, failed.timed_out) == (
        "PolicyRefused",
        False,
        False,
    )
    assert failed.message == "action_prohibited: no"
    assert failed.event_id == derived_event_id("req-event-1", "ExecutionFailed")


# --- outcomes ----------------------------------------------------------------------------


def test_a_successful_run_that_meets_its_post_condition_succeeds() -> None:
    result = AdapterResult(ok=True, result={"refund_id": "rf-1"}, duration_ms=12.5)

    [succeeded] = outcome_events(request(), result, catalog("refund_payment"), NOW)

    assert isinstance(succeeded, ExecutionSucceeded)
    assert (succeeded.execution_id, succeeded.action_name) == ("exec-1", "refund_payment")
    assert (succeeded.result, succeeded.duration_ms) == ({"refund_id": "rf-1"}, 12.5)
    assert (succeeded.causation_id, succeeded.correlation_id) == ("req-event-1", "case-event-1")
    assert succeeded.event_id == derived_event_id("req-event-1", "ExecutionSucceeded")


def test_an_adapter_error_is_a_failure_with_its_class_and_retriability() -> None:
    result = AdapterResult(
        ok=False,
        error_class="HTTPStatus503",
        retriable=True,
        message="upstream unavailable",
        duration_ms=40,
    )

    [failed] = outcome_events(request(), result, catalog("refund_payment"), NOW)

    assert isinstance(failed, ExecutionFailed)
    assert (failed.error_class, failed.retriable, failed.timed_out, failed.message) == (
        "HTTPStatus503",
        True,
        False,
        "upstream unavailable",
    )


def test_a_timeout_is_a_retriable_failure() -> None:
    result = AdapterResult.timeout(timeout_s=30, duration_ms=30_000)

    [failed] = outcome_events(request(), result, catalog("refund_payment"), NOW)

    assert isinstance(failed, ExecutionFailed)
    assert (failed.error_class, failed.retriable, failed.timed_out) == ("Timeout", True, True)
    assert "30s" in failed.message


def test_a_missed_post_condition_on_an_irreversible_action_only_fails() -> None:
    result = AdapterResult(ok=True, result={})
    refund = catalog("refund_payment")

    assert rollback_request(request(), result, refund) is None
    [failed] = outcome_events(request(), result, refund, NOW)
    assert isinstance(failed, ExecutionFailed)
    assert (failed.error_class, failed.retriable) == ("PostConditionFailed", False)


def test_a_missed_post_condition_on_a_reversible_action_is_rolled_back() -> None:
    req = request(PLAN)
    result = AdapterResult(ok=True, result={"plan_active": False, "previous_plan": "basic"})
    change_plan = catalog("change_plan")

    rollback = rollback_request(req, result, change_plan)
    events = outcome_events(
        req,
        result,
        change_plan,
        NOW,
        rollback_result=AdapterResult(ok=True, result={"plan_active": True}),
    )

    assert rollback == ActionSpec(name="change_plan", params={"plan": "basic"})
    failed, rolled_back = events
    assert isinstance(failed, ExecutionFailed) and failed.error_class == "PostConditionFailed"
    assert isinstance(rolled_back, ExecutionRolledBack)
    assert (rolled_back.rollback_action, rolled_back.succeeded) == ("change_plan", True)
    assert rolled_back.reason == "post_condition_failed: plan_active"


def test_a_failed_rollback_is_reported_as_such() -> None:
    req = request(PLAN)
    result = AdapterResult(ok=True, result={"plan_active": False, "previous_plan": "basic"})

    events = outcome_events(
        req,
        result,
        catalog("change_plan"),
        NOW,
        rollback_result=AdapterResult(ok=False, error_class="Boom"),
    )

    rolled_back = events[-1]
    assert isinstance(rolled_back, ExecutionRolledBack) and rolled_back.succeeded is False


def test_rollback_params_can_come_from_the_original_request() -> None:
    req = request(
        ActionSpec(name="update_address", params={"order_id": "ORD-7", "postal_code": "10115"})
    )
    result = AdapterResult(ok=True, result={"previous_postal_code": "20095"})

    rollback = rollback_request(req, result, catalog("update_address"))

    assert rollback == ActionSpec(
        name="update_address", params={"order_id": "ORD-7", "postal_code": "20095"}
    )
    assert rollback_execution_id(req) == derived_event_id("exec-1", "rollback")


def test_a_needed_rollback_must_have_been_run_first() -> None:
    result = AdapterResult(ok=True, result={"plan_active": False})

    with pytest.raises(ValueError, match="rollback"):
        outcome_events(request(PLAN), result, catalog("change_plan"), NOW)


def test_retried_attempts_get_their_own_ids_and_replays_the_same() -> None:
    result = AdapterResult.timeout(timeout_s=30, duration_ms=30_000)
    refund = catalog("refund_payment")

    first = outcome_events(request(), result, refund, NOW)
    replay = outcome_events(request(), result, refund, NOW)
    second = outcome_events(request(), result, refund, NOW, attempt=2)

    assert first == replay
    assert first[0].event_id != second[0].event_id


def test_the_deciding_policy_must_have_been_in_force_and_hold_the_action() -> None:
    """Fail closed on what the request claims decided it: a version never published, or an
    action that version's catalog never had, is refused whatever the current policy says."""
    req = replace(request(), policy_version=POLICY.version)
    assert deciding_policy_refusal(req, {POLICY.version: POLICY}) is None
    forged = replace(req, policy_version="made-up.9")
    reason = deciding_policy_refusal(forged, {POLICY.version: POLICY})
    assert reason is not None and reason.startswith("unknown_policy_version")
    outside = replace(req, action=ActionSpec(name="wire_transfer", params={}))
    reason = deciding_policy_refusal(outside, {POLICY.version: POLICY})
    assert reason is not None and reason.startswith("not_in_deciding_catalog")


# --- a downstream reply as the outcome event can carry it ---------------------------------


def test_a_reply_the_schema_can_carry_is_kept_and_encodes() -> None:
    reply = {
        "n": 2**63 - 1,
        "low": -(2**63),
        "x": 1.5,
        "ok": True,
        "none": None,
        "text": "broken \ud800 surrogate",
        "nested": {"big": 2**70, "list": [1, "a"]},
    }

    kept = schema_result(reply)

    assert kept["n"] == 2**63 - 1 and kept["low"] == -(2**63) and kept["ok"] is True
    assert kept["text"] == "broken \ufffd surrogate"
    assert kept["nested"] == '{"big": 1180591620717411303424, "list": [1, "a"]}'
    [succeeded] = outcome_events(
        request(), AdapterResult(ok=True, result=kept), catalog("refund_payment"), NOW
    )
    Codec.load().encode(succeeded)  # the schema takes it


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ({"refund_id": 2**70}, "integer outside 64 bits"),
        ({"refund_id": -(2**63) - 1}, "integer outside 64 bits"),
        ({"x": float("nan")}, "nan"),
        ({"x": float("inf")}, "inf"),
        ({"x": [float("nan")]}, "no JSON form"),
        ({1: "a"}, "not a string"),
        ({"x": "y" * 100_001}, "more than 100000"),
    ],
)
def test_a_reply_the_schema_cannot_carry_is_refused_with_the_reason(
    reply: dict[object, object], why: str
) -> None:
    with pytest.raises(UnencodableResultError, match=why):
        schema_result(reply)


def test_an_uncarriable_reply_ends_the_run_as_a_failure_not_a_lost_outcome() -> None:
    ran = AdapterResult(ok=True, result={"refund_id": 2**70}, duration_ms=3.0)

    result = carried(ran)
    [failed] = outcome_events(request(), result, catalog("refund_payment"), NOW)

    assert (result.ok, result.retriable, result.error_class) == (False, False, UNENCODABLE_RESULT)
    assert isinstance(failed, ExecutionFailed)
    assert failed.error_class == UNENCODABLE_RESULT
    assert failed.message.startswith("unencodable_result: 'refund_id' is an integer outside 64")
    assert failed.duration_ms == 3.0
    Codec.load().encode(failed)
