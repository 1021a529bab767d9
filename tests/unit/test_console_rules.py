"""The console's pure rules: who may act on what, readiness verdicts, chart geometry,
token handling and request validation (no broker, no database)."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from console.api.metrics import Dimension
from console.api.models import ReviewRequest
from console.api.permissions import (
    ai_output_hidden,
    may_reclassify,
    override_choices,
    override_refusal,
    review_refusal,
)
from console.api.readiness import readiness
from console.auth import Operator, form_token, new_token, token_sha256
from console.web.charts import bar_chart, time_series
from policy.loader import default_policy_path, load_policy_file
from policy.model import Policy
from projections.queries import DIMENSIONS
from schemas.events import ActionSpec

POLICY: Policy = load_policy_file(default_policy_path()).policy
SAM = Operator("sam", ("supervisor",))
ANN = Operator("ann", ("agent",))


def test_an_operator_reviews_only_items_their_roles_are_eligible_for_and_only_once() -> None:
    eligible = ("supervisor", "finance_lead")
    assert review_refusal(SAM, eligible, ()) is None
    assert "needs one of supervisor, finance_lead" in (review_refusal(ANN, eligible, ()) or "")
    assert "already approved" in (review_refusal(SAM, eligible, ("sam",)) or "")


def test_overrides_are_offered_only_to_actions_the_roles_may_approve() -> None:
    # refund_payment's approvers are supervisor and finance_lead; close_account is
    # prohibited in billing; reship_order is not a billing action.
    assert override_choices(SAM, POLICY, "billing") == [
        "refund_payment",
        "change_plan",
        "escalate_to_specialist",
    ]
    assert override_choices(ANN, POLICY, "billing") == ["escalate_to_specialist"]
    assert override_choices(SAM, POLICY, "no_such_workflow") == []


@pytest.mark.parametrize(
    ("operator", "action", "status", "says"),
    [
        (ANN, ActionSpec(name="change_plan", params={"plan": "pro"}), 403, "billing.plan"),
        (SAM, ActionSpec(name="teleport"), 422, "not in the action catalog"),
        (SAM, ActionSpec(name="close_account"), 403, "account.close"),
        (
            SAM,
            ActionSpec(name="refund_payment", params={"amount": 900.0, "order_id": "ORD-1"}),
            422,
            "above the catalog max",
        ),
        (SAM, ActionSpec(name="change_plan", params={"plan": "gold"}), 422, "plan"),
    ],
)
def test_an_override_outside_role_or_envelope_is_refused_with_a_reason(
    operator: Operator, action: ActionSpec, status: int, says: str
) -> None:
    refusal = override_refusal(operator, POLICY, "billing", action)
    assert refusal is not None
    assert refusal[0] == status and says in refusal[1]


def test_an_override_inside_role_and_envelope_passes() -> None:
    plan = ActionSpec(name="change_plan", params={"plan": "pro"})
    assert override_refusal(SAM, POLICY, "billing", plan) is None


def test_reclassifying_needs_a_role_the_policy_defines() -> None:
    assert may_reclassify(ANN, POLICY)
    assert not may_reclassify(Operator("old", ("retired_role",)), POLICY)
    assert may_reclassify(Operator("x", ("anything",)), None)


@pytest.mark.parametrize(
    ("phase", "status", "hidden"),
    [
        ("assisted", "open", False),
        ("bounded", "open", False),
        ("shadow", "open", True),
        (None, "open", True),  # out of scope, or not decided yet
        ("shadow", "resolved", False),
    ],
)
def test_ai_output_is_hidden_in_shadow_and_out_of_scope_until_resolved(
    phase: str | None, status: str, hidden: bool
) -> None:
    assert ai_output_hidden(phase, status) is hidden


def test_readiness_needs_sample_acceptance_and_no_failed_check() -> None:
    billing = POLICY.workflows["billing"]  # min acceptance .85, max override .1, sample 150
    good = {"reviewed": 200, "acceptance_rate": 0.9, "override_rate": 0.05, "error_rate": 0.0}
    assert readiness(billing, good, None).verdict == "ready for bounded"
    small = {**good, "reviewed": 20}
    assert readiness(billing, small, None).verdict == "not ready: sample 20 of 150 needed"
    overriding = {**good, "override_rate": 0.3}
    result = readiness(billing, overriding, None)
    assert not result.ready and result.verdict == "not ready: override rate outside the threshold"
    no_executions = {**good, "error_rate": None}
    assert readiness(billing, no_executions, None).ready  # no data is not a failure
    assert readiness(billing, None, None).verdict == "not ready: sample 0 of 150 needed"


def test_shadow_readiness_uses_how_often_operators_did_what_was_recommended() -> None:
    shipping = POLICY.workflows["shipping"]  # min acceptance .8, sample 100
    aligned = {"with_action": 120, "action_match_rate": 0.83}
    result = readiness(shipping, None, aligned)
    assert (result.ready, result.next_phase, result.sample) == (True, "assisted", 120)
    assert [c.name for c in result.checks] == ["acceptance_rate", "error_rate"]


def test_bar_chart_scales_to_the_largest_value_and_marks_missing_data() -> None:
    chart = bar_chart([("a", 2.0), ("b", 1.0), ("c", None)], lambda v: f"{v:g}", width=400)
    room = 400 - chart.label_width - 90
    assert [b.width for b in chart.bars] == [room, room / 2, 0.0]
    assert [b.text for b in chart.bars] == ["2", "1", "no data"]


def test_time_series_skips_gaps_and_keeps_labels_as_data() -> None:
    chart = time_series([("2026-11-01", 1.0), ("2026-11-02", None), ("<b>", 0.5)], str)
    assert [p.label for p in chart.points] == ["2026-11-01", "<b>"]  # escaped when drawn
    assert chart.path.startswith("M") and chart.path.count("L") == 1
    assert set(chart.path) <= set("ML0123456789. ")  # numbers only in the path data


def test_tokens_are_random_and_only_their_hash_is_compared() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 43  # 32 bytes, URL-safe base64
    assert token_sha256(a) != token_sha256(b) and len(token_sha256(a)) == 64
    assert form_token(a) != form_token(b) and form_token(a) == form_token(a)


def test_cross_field_rules_name_the_field_at_fault() -> None:
    base = {"recommendation_id": "r1", "idempotency_key": "key-00001"}
    reject = ReviewRequest.model_validate({**base, "verdict": "reject"})
    assert reject.problems() == [(("body", "reason"), "a reason is required to reject")]
    approve = ReviewRequest.model_validate(
        {**base, "verdict": "approve", "override": {"action": "change_plan"}}
    )
    assert [loc for loc, _ in approve.problems()] == [("body", "override")]
    with pytest.raises(ValidationError) as caught:
        ReviewRequest.model_validate({**base, "verdict": "approve", "actor": "mallory"})
    assert caught.value.errors()[0]["loc"] == ("actor",)


def test_the_api_offers_exactly_the_metric_dimensions() -> None:
    assert get_args(Dimension) == DIMENSIONS
