"""The recommend processor started behind a backlog whose history arrives with it: every
event (the resolved history and the new cases after it) is on the topic before the
processor starts, so its first batch is older than every label and the first fit is
empty. It must still fit a model as soon as labels exist and recommend the later cases
from it, instead of answering 'no model fitted yet' for the whole backlog."""

from __future__ import annotations

from infra.settings import Settings
from processors.recommend.evaluate import after_history
from schemas.codec import Codec
from schemas.events import CaseOpened, CaseResolved, RecommendationProduced
from tests.integration.helpers import running
from tests.integration.pipeline import Tail, send
from tests.integration.scenario import policy_event
from tests.integration.test_recommend_processor import demo_events, due_recommendations

NEW_CASES = 150


def test_a_backlog_with_its_own_history_is_recommended_from_a_learned_model(
    settings: Settings,
) -> None:
    codec = Codec.load()
    history = demo_events("history.jsonl")
    later = demo_events("cases.jsonl")
    new = after_history(history, [e for e in later if isinstance(e, CaseOpened)][:NEW_CASES])
    truth = {e.case_id: e.category for e in later if isinstance(e, CaseResolved)}
    assert max(e.occurred_at for e in history) < min(e.occurred_at for e in new)
    send(settings, codec, [policy_event(), *history, *new])
    expected = due_recommendations([*history, *new])

    tail = Tail(settings, ("recommendations",), codec)
    try:
        with running(settings, ("processors.worker", "intake"), ("processors.worker", "recommend")):
            tail.wait(
                lambda: len({r.event.event_id for r in tail.records}) >= expected,
                timeout_s=240,
                what=lambda: (
                    f"{expected} recommendations, have "
                    f"{len({r.event.event_id for r in tail.records})}"
                ),
            )
    finally:
        tail.close()

    by_case = {
        r.event.case_id: r.event
        for r in tail.records
        if isinstance(r.event, RecommendationProduced)
    }
    fresh = [by_case[e.case_id] for e in new]
    unfitted = [rec.case_id for rec in fresh if rec.provenance.model_version is None]
    assert unfitted == [], f"{len(unfitted)} of {len(fresh)} new cases had no model"
    assert all(rec.similar_cases for rec in fresh), "a learned history gives similar cases"
    judged = [rec for rec in fresh if rec.case_id in truth]
    correct = sum(rec.category == truth[rec.case_id] for rec in judged)
    assert correct / len(judged) > 0.6, f"{correct}/{len(judged)} categories right"
