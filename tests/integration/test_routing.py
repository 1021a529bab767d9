"""Routing across processors on the real broker: a case re-queued by CaseUpdated is
guarded under the workflow of its new queue, whatever it was opened in (intake ->
recommend -> guard, the default policy)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import CaseUpdated, GuardrailDecided, RecommendationProduced
from tests.integration.helpers import running
from tests.integration.pipeline import Tail, case_opened, send
from tests.integration.scenario import policy_event


def test_a_case_requeued_by_an_update_is_guarded_under_its_new_queue(settings: Settings) -> None:
    codec = Codec.load()
    opened = case_opened("route-1", "billing")
    requeued = CaseUpdated(
        event_id="route-1-requeued",
        case_id="route-1",
        occurred_at=opened.occurred_at + timedelta(seconds=1),
        actor="crm",
        changes={"queue": "identity"},
    )
    # The text says billing all along: only the routing field moved.
    opened = replace(opened, subject="refund my double charge", description="billing, billing")
    send(settings, codec, [policy_event()])
    tail = Tail(settings, ("recommendations", "decisions"), codec)
    processors = [("processors.worker", c) for c in ("intake", "recommend", "guard")]
    try:
        with running(settings, *processors):
            send(settings, codec, [opened, requeued])
            decided = tail.wait(
                lambda: (
                    len(found := tail.events(GuardrailDecided, case_id="route-1")) >= 2 and found
                ),
                timeout_s=120,
                what="a decision on each recommendation of route-1",
            )
    finally:
        tail.close()

    recs = {r.recommendation_id: r for r in tail.events(RecommendationProduced, case_id="route-1")}
    by_cause = {recs[d.recommendation_id].causation_id: d for d in decided}
    queues = {}
    for cause, decision in by_cause.items():
        routing = recs[decision.recommendation_id].routing
        assert routing is not None
        queues[cause] = routing.queue
    assert queues == {"opened-route-1": "billing", "route-1-requeued": "identity"}
    assert (by_cause["opened-route-1"].workflow, by_cause["route-1-requeued"].workflow) == (
        "billing",
        "identity_access",
    )
