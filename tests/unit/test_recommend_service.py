"""Given case views, the policy and a fitted memory, when the service plans and concludes,
then the events."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from processors.recommend.case_view import CaseView, apply_update, open_view
from processors.recommend.memory import Memory
from processors.recommend.redacted_view import Visibility
from processors.recommend.service import BASELINE_MODEL, conclude, plan_batch, recommend, route
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    Event,
    RecommendationProduced,
    Routing,
    Scalar,
    derived_event_id,
)
from tests.unit.test_recommend_support import (
    AT,
    default_policy,
    memory_for,
    opened,
    policy_with,
    resolved,
    updated,
)

POLICY = default_policy()
MEMORY = memory_for(POLICY)  # read-only here
CHARGED = opened(
    "q-2",
    "Charged twice",
    "My card was charged twice, please refund.",
    customer={"name": "Bo Chen", "email": "bo@example.com"},
)
LOCKED = opened(
    "q-1", "Locked out after password change", "My account is locked.", queue="identity"
)
STRAY = opened("q-9", "Charged twice", "Refund please.", queue="nowhere")


def only(events: Sequence[Event]) -> RecommendationProduced:
    assert len(events) == 1 and isinstance(events[0], RecommendationProduced)
    return events[0]


def concluded(views: list[CaseView], memory: Memory = MEMORY) -> list[RecommendationProduced]:
    return [only(conclude(p, None, AT)) for p in plan_batch(views, POLICY, memory)]


def test_a_recommendation_carries_what_was_seen_the_model_version_and_derived_ids() -> None:
    [rec] = concluded([open_view(CHARGED)])
    assert rec.event_id == derived_event_id(CHARGED.event_id, "RecommendationProduced")
    assert rec.recommendation_id == derived_event_id(CHARGED.event_id, "recommendation")
    assert (rec.causation_id, rec.correlation_id) == (CHARGED.event_id, CHARGED.event_id)
    assert (rec.workflow, rec.category, rec.occurred_at) == ("billing", "double_charge", AT)
    assert rec.action is not None and rec.action.name == "refund_payment"
    assert {s.case_id for s in rec.similar_cases[:3]} == {"h-bill-1", "h-bill-2", "h-bill-3"}
    p = rec.provenance
    assert (p.recommender, p.model, p.model_version, p.prompt_version, p.policy_version) == (
        "baseline",
        BASELINE_MODEL,
        MEMORY.model_version,
        None,
        POLICY.version,
    )
    assert p.fields_seen == ("subject", "description", "channel", "queue", "priority")
    assert p.fallback_reason is None and len(p.input_sha256) == 64


def test_the_recommendation_records_the_routing_fields_the_case_had() -> None:
    view = apply_update(open_view(CHARGED), updated("q-2", {"priority": "urgent"}))
    [rec] = concluded([view])
    assert rec.routing == Routing(
        channel="email",
        queue="billing",
        team="team",
        issue_class=None,
        priority="urgent",
        source="helpdesk",
    )


def test_the_batch_routes_each_case_and_out_of_scope_ones_still_get_a_recommendation() -> None:
    locked, charged, stray = concluded([open_view(LOCKED), open_view(CHARGED), open_view(STRAY)])
    assert (locked.workflow, charged.workflow, stray.workflow) == (
        "identity_access",
        "billing",
        None,
    )
    assert stray.provenance.recommender == "baseline"
    assert route(open_view(CHARGED), POLICY).name == "billing"  # type: ignore[union-attr]


def test_a_case_is_planned_the_same_alone_or_within_a_batch() -> None:
    views = [open_view(c) for c in (LOCKED, CHARGED, STRAY)]
    together = concluded(views)
    for view, rec in zip(views, together, strict=True):
        [alone] = concluded([view])
        assert (alone.workflow, alone.category, alone.action) == (
            rec.workflow,
            rec.category,
            rec.action,
        )
        assert [s.case_id for s in alone.similar_cases] == [s.case_id for s in rec.similar_cases]
        assert alone.confidence == pytest.approx(rec.confidence, abs=1e-3)


def test_the_same_history_and_batch_give_byte_identical_events() -> None:
    codec = Codec.load()
    views = [open_view(c) for c in (LOCKED, CHARGED, STRAY)]
    first = [codec.encode(e) for e in concluded(views)]
    again = [codec.encode(e) for e in concluded(views, memory_for(POLICY))]
    assert again == first


def test_an_update_is_the_cause_and_the_opening_stays_the_correlation() -> None:
    view = apply_update(open_view(CHARGED), updated("q-2", {"subject": "Refund please"}))
    [rec] = concluded([view])
    assert rec.causation_id == "upd-q-2-1" and rec.correlation_id == CHARGED.event_id
    assert rec.event_id == derived_event_id("upd-q-2-1", "RecommendationProduced")


def test_a_cold_start_recommendation_is_zero_confidence_and_actionless() -> None:
    [rec] = concluded([open_view(CHARGED)], memory_for(POLICY, events=[]))
    assert (rec.category, rec.confidence, rec.action, rec.similar_cases) == (None, 0.0, None, ())
    assert rec.provenance.model_version is None
    assert "Insufficient history" in rec.rationale


def test_the_workflows_own_threshold_decides_abstention() -> None:
    strict = policy_with(kind="baseline", min_confidence=0.99)
    [p] = plan_batch([open_view(CHARGED)], strict, memory_for(strict))
    assert p.baseline.category == "double_charge" and p.baseline.action is None
    assert "below this workflow's threshold 0.99" in p.baseline.rationale
    [default] = plan_batch([open_view(CHARGED)], POLICY, MEMORY)
    assert default.baseline.action is not None


def test_a_memory_learned_under_another_allowlist_is_refused() -> None:
    other = Memory(Visibility(("subject", "customer"), ()))
    with pytest.raises(ValueError, match="another model_visibility"):
        plan_batch([open_view(CHARGED)], POLICY, other)


def test_recommendations_fit_the_avro_contract() -> None:
    codec = Codec.load()
    for rec in concluded([open_view(CHARGED), open_view(STRAY)]):
        assert codec.decode(*codec.encode(rec)) == rec


def plan_history(*params: dict[str, Scalar]) -> list[Event]:
    events: list[Event] = []
    for i, p in enumerate(params):
        events += [
            opened(f"pl-{i}", "Downgrade to the basic plan", "Move us to basic."),
            resolved(f"pl-{i}", "plan_change", ActionSpec(name="change_plan", params=p)),
        ]
    return events


def test_history_parameters_the_catalog_does_not_declare_are_dropped() -> None:
    memory = memory_for(
        POLICY,
        events=plan_history(
            {"plan": "basic", "effective": "next_cycle"},
            {"plan": "basic", "effective": "next_cycle"},
        ),
    )
    query = opened("q-5", "Downgrade to basic plan", "Please downgrade us.")
    rec = only(recommend(open_view(query), POLICY.policy.workflows["billing"], POLICY, memory, AT))
    assert rec.action == ActionSpec(name="change_plan", params={"plan": "basic"})


def test_a_baseline_action_outside_the_catalog_limits_is_withdrawn_with_a_reason() -> None:
    memory = memory_for(POLICY, events=plan_history({"plan": "platinum"}, {"plan": "platinum"}))
    query = opened("q-6", "Downgrade to basic plan", "Please downgrade us.")
    rec = only(recommend(open_view(query), POLICY.policy.workflows["billing"], POLICY, memory, AT))
    assert rec.action is None and rec.category == "plan_change"
    assert "change_plan is not proposed: param_invalid" in rec.rationale
