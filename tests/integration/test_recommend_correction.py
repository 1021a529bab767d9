"""A correction on the real broker: an operator's reclassification of a learned case
changes the very next recommendation for a near-identical case, without waiting for a
refit (issue 13: learning from corrections)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

from cli.produce import publish
from schemas.codec import IMPORT_HEADER, Codec
from schemas.events import CaseOpened, CaseReclassified, CaseResolved, RecommendationProduced
from tests.chaos.faults import Probe
from tests.integration.helpers import eventually, spawn, stop_all
from tests.integration.pipeline import Tail, send
from tests.integration.scenario import policy_event
from tests.integration.test_recommend_processor import demo_events
from tests.stack import Stack

CORRECTED = "contract_question"


def test_a_reclassification_changes_the_next_recommendation(stack: Stack) -> None:
    settings = stack.isolated()
    codec = Codec.load()
    history = demo_events("history.jsonl")
    resolved = {e.case_id: e for e in history if isinstance(e, CaseResolved)}
    learned = next(e for e in history if isinstance(e, CaseOpened) and e.case_id in resolved)
    category = resolved[learned.case_id].category
    send(settings, codec, [policy_event()])
    # Imported, as a desk loads its history: learned, never recommended for.
    publish(settings, codec, history, headers=[(IMPORT_HEADER, b"history")])

    def twin(n: int) -> CaseOpened:
        """A new case with the learned case's very words, opened now: a recommendation
        learns only from labels given before its case (point-in-time)."""
        return replace(
            learned, event_id=f"twin-{n}", case_id=f"twin-{n}", occurred_at=datetime.now(UTC)
        )

    tail = Tail(settings, ("recommendations",), codec)
    procs = [spawn(settings, "processors.worker", "intake", "intake")]

    def recommended(case_id: str) -> RecommendationProduced:
        [rec] = tail.wait(
            lambda: [
                r.event
                for r in tail.records
                if isinstance(r.event, RecommendationProduced) and r.event.case_id == case_id
            ],
            timeout_s=120,
            what=f"the recommendation for {case_id}",
        )
        assert isinstance(rec, RecommendationProduced)
        return rec

    def caught_up(component: str) -> bool:
        position = probe.position(component)
        return position is not None and position.caught_up

    probe = Probe(settings)
    try:
        # The history is learned before the first twin: the twin lands on another
        # partition, so it could otherwise overtake the learned case's resolution.
        eventually(lambda: caught_up("intake"), timeout_s=120, what="intake to read the history")
        # Started once the whole history is on `cases`, so that its start-up fit covers
        # all of it (intake, sealing every case, may still be at work on a busy machine).
        procs.append(spawn(settings, "processors.worker", "recommend", "recommend"))
        eventually(lambda: caught_up("recommend"), 120, "the recommender to learn the history")
        send(settings, codec, [twin(1)])
        before = recommended("twin-1")
        assert before.category == category  # learned from the history
        send(
            settings,
            codec,
            [
                CaseReclassified(
                    event_id=f"reclassify-{learned.case_id}",
                    case_id=learned.case_id,
                    occurred_at=datetime.now(UTC),
                    review_id=f"review-reclassify-{learned.case_id}",
                    actor="sam",
                    roles=("supervisor",),
                    category=CORRECTED,
                    reason="was a question about the contract",
                )
            ],
        )
        time.sleep(3.0)  # the memory follows `reviews` between batches
        send(settings, codec, [twin(2)])
        after = recommended("twin-2")
    finally:
        stop_all(procs)
        tail.close()
        probe.close()

    assert after.category == CORRECTED != category
    assert learned.case_id in {s.case_id for s in after.similar_cases}
    assert after.provenance.model_version == before.provenance.model_version  # no refit
