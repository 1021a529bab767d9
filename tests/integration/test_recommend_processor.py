"""The recommend processor on the real broker: it learns from the resolved history on the
topic, recommends once per case with the fields and provenance the contract asks for, and
loses nothing when it is killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from infra.settings import PROJECT_ROOT, Settings
from schemas.codec import Codec
from schemas.events import CaseOpened, CaseResolved, CaseUpdated, Event, RecommendationProduced
from schemas.jsonform import loads
from tests.integration.helpers import OUTPUT
from tests.integration.pipeline import Tail, send
from tests.integration.scenario import policy_event
from tests.stack import env_for

DEMO = PROJECT_ROOT / "examples" / "demo"
ALLOWED = {"subject", "description", "channel", "queue", "priority", "attributes.product"}


def demo_events(name: str) -> list[Event]:
    return [loads(line) for line in (DEMO / name).read_text().splitlines() if line.strip()]


def start(settings: Settings, log_name: str) -> subprocess.Popen[bytes]:
    OUTPUT.mkdir(exist_ok=True)
    log = (OUTPUT / f"{settings.topic_prefix}{log_name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "processors.worker", "recommend"],
        env=env_for(settings),
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


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
    # A recommendation is due per CaseOpened, and again per update that changes the text.
    retexts = [
        e
        for e in history
        if isinstance(e, CaseUpdated) and {"subject", "description"} & set(e.changes)
    ]
    expected = len(opened) + len(retexts)

    tail = Tail(settings, ("recommendations",), codec)
    first = start(settings, "recommend-1")
    try:
        tail.wait(lambda: len(tail.records) >= 50, timeout_s=90, what="the first recommendations")
        send(settings, codec, new)  # the live cases arrive while it works
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        second = start(settings, "recommend-2")
        try:
            tail.wait(
                lambda: len({r.event.event_id for r in tail.records}) >= expected,
                timeout_s=120,
                what=lambda: (
                    f"{expected} recommendations, have "
                    f"{len({r.event.event_id for r in tail.records})}"
                ),
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        tail.close()

    recs = [r.event for r in tail.records if isinstance(r.event, RecommendationProduced)]
    by_id: dict[str, RecommendationProduced] = {}
    for rec in recs:  # at-least-once: a repeat must be the very same event
        assert by_id.setdefault(rec.event_id, rec) == rec
    assert len(by_id) == expected
    causes = {rec.causation_id for rec in by_id.values()}
    assert {e.event_id for e in opened} <= causes  # every case recommended, none lost

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
