"""Given a case view, a workflow and the policy, when recommend runs, then the events."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from processors.recommend.baseline import BaselineIndex
from processors.recommend.case_view import apply_update, open_view
from processors.recommend.service import BASELINE_MODEL, recommend, route
from processors.recommend.visibility import Visibility
from schemas.codec import Codec
from schemas.events import ActionSpec, Event, RecommendationProduced, Scalar, derived_event_id
from tests.unit.test_recommend_support import (
    AT,
    default_policy,
    index_for,
    opened,
    resolved,
    updated,
)

POLICY = default_policy()
CHARGED = opened(
    "q-2",
    "Charged twice",
    "My card was charged twice, please refund.",
    customer={"name": "Bo Chen", "email": "bo@example.com"},
)


def only(events: Sequence[Event]) -> RecommendationProduced:
    assert len(events) == 1 and isinstance(events[0], RecommendationProduced)
    return events[0]


def test_a_recommendation_carries_what_was_seen_and_derived_ids() -> None:
    index = index_for(POLICY)
    view = open_view(CHARGED)
    rec = only(recommend(view, POLICY.policy.workflows["billing"], POLICY, index, AT))
    assert rec.event_id == derived_event_id(CHARGED.event_id, "RecommendationProduced")
    assert rec.recommendation_id == derived_event_id(CHARGED.event_id, "recommendation")
    assert (rec.causation_id, rec.correlation_id) == (CHARGED.event_id, CHARGED.event_id)
    assert (rec.workflow, rec.category, rec.occurred_at) == ("billing", "double_charge", AT)
    assert rec.action is not None and rec.action.name == "refund_payment"
    assert [s.case_id for s in rec.similar_cases][:3] == ["h-bill-1", "h-bill-3", "h-bill-2"]
    p = rec.provenance
    assert (p.recommender, p.model, p.prompt_version, p.policy_version) == (
        "baseline",
        BASELINE_MODEL,
        None,
        POLICY.version,
    )
    assert p.fields_seen == ("subject", "description", "channel", "queue", "priority")
    assert p.fallback_reason is None and len(p.input_sha256) == 64


def test_redelivery_of_the_cause_gives_the_same_events() -> None:
    index = index_for(POLICY)
    workflow = POLICY.policy.workflows["billing"]
    first = recommend(open_view(CHARGED), workflow, POLICY, index, AT)
    assert recommend(open_view(CHARGED), workflow, POLICY, index, AT) == first


def test_an_update_is_the_cause_and_the_opening_stays_the_correlation() -> None:
    view = apply_update(open_view(CHARGED), updated("q-2", {"subject": "Refund please"}))
    rec = only(recommend(view, POLICY.policy.workflows["billing"], POLICY, index_for(POLICY), AT))
    assert rec.causation_id == "upd-q-2-1" and rec.correlation_id == CHARGED.event_id
    assert rec.event_id == derived_event_id("upd-q-2-1", "RecommendationProduced")


def test_cases_route_to_a_workflow_and_out_of_scope_ones_still_get_a_recommendation() -> None:
    index = index_for(POLICY)
    assert route(open_view(CHARGED), POLICY, index).name == "billing"  # type: ignore[union-attr]
    stray = opened("q-9", "Charged twice", "Refund please.", queue="nowhere")
    assert route(open_view(stray), POLICY, index) is None
    rec = only(recommend(open_view(stray), None, POLICY, index, AT))
    assert rec.workflow is None and rec.provenance.recommender == "baseline"


def test_a_cold_start_recommendation_is_low_confidence_and_actionless() -> None:
    rec = only(
        recommend(
            open_view(CHARGED),
            POLICY.policy.workflows["billing"],
            POLICY,
            index_for(POLICY, events=[]),
            AT,
        )
    )
    assert (rec.category, rec.confidence, rec.action, rec.similar_cases) == (None, 0.0, None, ())
    assert "Insufficient history" in rec.rationale


def test_an_index_learned_under_another_allowlist_is_refused() -> None:
    other = BaselineIndex(Visibility(("subject", "customer"), ()))
    with pytest.raises(ValueError, match="another model_visibility"):
        recommend(open_view(CHARGED), None, POLICY, other, AT)


def test_recommendations_fit_the_avro_contract() -> None:
    codec = Codec.load()
    events = recommend(
        open_view(CHARGED), POLICY.policy.workflows["billing"], POLICY, index_for(POLICY), AT
    )
    for event in events:
        assert codec.decode(*codec.encode(event)) == event


def plan_history(*params: dict[str, Scalar]) -> list[Event]:
    events: list[Event] = []
    for i, p in enumerate(params):
        events += [
            opened(f"pl-{i}", "Downgrade to the basic plan", "Move us to basic."),
            resolved(f"pl-{i}", "plan_change", ActionSpec(name="change_plan", params=p)),
        ]
    return events


def test_history_parameters_the_catalog_does_not_declare_are_dropped() -> None:
    index = index_for(
        POLICY,
        events=plan_history(
            {"plan": "basic", "effective": "next_cycle"},
            {"plan": "basic", "effective": "next_cycle"},
        ),
    )
    query = opened("q-5", "Downgrade to basic plan", "Please downgrade us.")
    rec = only(recommend(open_view(query), POLICY.policy.workflows["billing"], POLICY, index, AT))
    assert rec.action == ActionSpec(name="change_plan", params={"plan": "basic"})


def test_a_baseline_action_outside_the_catalog_limits_is_withdrawn_with_a_reason() -> None:
    index = index_for(POLICY, events=plan_history({"plan": "platinum"}, {"plan": "platinum"}))
    query = opened("q-6", "Downgrade to basic plan", "Please downgrade us.")
    rec = only(recommend(open_view(query), POLICY.policy.workflows["billing"], POLICY, index, AT))
    assert rec.action is None and rec.category == "plan_change"
    assert "change_plan is not proposed: param_invalid" in rec.rationale
