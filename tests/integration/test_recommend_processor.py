"""The recommend processor on the real broker: it learns from the resolved history on the
topic and recommends once per case with the fields and provenance the contract asks for,
and a worker killed with SIGKILL mid-stream and started again loses no recommendation.
Upstream's events go through intake, as in production."""

from __future__ import annotations

import signal
import subprocess

from infra.settings import PROJECT_ROOT, Settings
from processors.recommend.case_view import CaseView, apply_update, open_view, text_changed
from schemas.codec import Codec
from schemas.events import CaseOpened, CaseResolved, CaseUpdated, Event, RecommendationProduced
from schemas.jsonform import loads
from tests.integration.helpers import spawn, stop_all
from tests.integration.pipeline import Tail, send
from tests.integration.scenario import policy_event

DEMO = PROJECT_ROOT / "examples" / "demo"
ALLOWED = {"subject", "description", "channel", "queue", "priority", "attributes.product"}


def demo_events(name: str) -> list[Event]:
    return [loads(line) for line in (DEMO / name).read_text().splitlines() if line.strip()]


def start(settings: Settings, log_name: str) -> subprocess.Popen[bytes]:
    return spawn(settings, "processors.worker", "recommend", log_name)


def due_recommendations(events: list[Event]) -> int:
    """Recommendations the contract asks for: one per CaseOpened, and one per CaseUpdated
    that changes the text the model reads or the fields the case is routed on."""
    views: dict[str, CaseView] = {}
    due = 0
    for e in events:
        if isinstance(e, CaseOpened) and e.case_id not in views:
            views[e.case_id] = open_view(e)
            due += 1
        elif isinstance(e, CaseUpdated) and e.case_id in views:
            before, after = views[e.case_id], apply_update(views[e.case_id], e)
            views[e.case_id] = after
            due += text_changed(before, after) or before.routing != after.routing
    return due


def test_recommends_each_case_once_from_learned_history_and_survives_sigkill(
    settings: Settings,
) -> None:
    codec = Codec.load()
    history = demo_events("history.jsonl")
    new = [e for e in demo_events("cases.jsonl") if isinstance(e, CaseOpened)][:120]
    truth = {
        e.case_id: e.category for e in demo_events("cases.jsonl") if isinstance(e, CaseResolved)
    }
    send(settings, codec, [policy_event()])
    send(settings, codec, history)
    opened = [e for e in history if isinstance(e, CaseOpened)] + new
    expected = due_recommendations([*history, *new])

    tail = Tail(settings, ("recommendations",), codec)
    intake = spawn(settings, "processors.worker", "intake", "intake")
    worker = start(settings, "recommend")
    try:
        tail.wait(lambda: len(tail.records) >= 50, timeout_s=90, what="the first recommendations")
        worker.send_signal(signal.SIGKILL)  # mid-stream: the history is still being worked
        worker.wait(30)
        killed_at = len({r.event.event_id for r in tail.records})
        assert killed_at < expected, "the kill must land before the work is done"
        worker = start(settings, "recommend-restarted")
        send(settings, codec, new)  # the live cases arrive while it recovers
        tail.wait(
            lambda: len({r.event.event_id for r in tail.records}) >= expected,
            timeout_s=180,
            what=lambda: (
                f"{expected} recommendations, have {len({r.event.event_id for r in tail.records})}"
            ),
        )
    finally:
        stop_all((worker, intake))
        tail.close()

    recs = [r.event for r in tail.records if isinstance(r.event, RecommendationProduced)]
    by_id: dict[str, RecommendationProduced] = {}
    for rec in recs:  # at-least-once: a repeat must be the very same event
        assert by_id.setdefault(rec.event_id, rec) == rec
    assert len(by_id) == expected
    causes = {rec.causation_id for rec in by_id.values()}
    assert {e.event_id for e in opened} <= causes  # every case recommended

    live = [rec for rec in by_id.values() if rec.case_id in {e.case_id for e in new}]
    assert len(live) == len(new)
    for rec in live:
        assert rec.provenance.recommender == "baseline"
        assert set(rec.provenance.fields_seen) <= ALLOWED
        assert len(rec.provenance.input_sha256) == 64
        assert rec.provenance.policy_version == policy_event().version
        assert rec.summary and rec.rationale
        assert rec.similar_cases, "a learned history gives similar cases"
        assert 0.0 <= rec.confidence <= 1.0
    judged = [rec for rec in live if rec.case_id in truth]
    correct = sum(rec.category == truth[rec.case_id] for rec in judged)
    assert correct / len(judged) > 0.6, f"{correct}/{len(judged)} categories right"
