"""The read models killed with SIGKILL mid-stream resume from the offsets stored with their
rows: nothing lost, nothing applied twice, the audit chain intact."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import psycopg
from confluent_kafka import Producer

from infra.db import database_urls
from infra.kafka import producer_config
from infra.settings import Settings
from projections.audit import verify
from schemas.codec import Codec
from schemas.events import CaseOpened, CaseReopened, CaseResolved, Event
from tests.integration.helpers import eventually, spawn

CASES = 4000
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def lifecycle(i: int) -> list[Event]:
    case_id = f"case-{i:05d}"
    at = T0 + timedelta(seconds=i)
    return [
        CaseOpened(
            event_id=f"o-{i}",
            case_id=case_id,
            occurred_at=at,
            source="crm",
            channel="chat",
            queue=f"q{i % 3}",
            team="t",
            subject=f"subject {i}",
            description="d",
            priority="normal",
            customer={},
            attributes={},
        ),
        CaseResolved(
            event_id=f"r-{i}",
            case_id=case_id,
            occurred_at=at,
            resolved_by="op",
            resolution_code="done",
            category="billing",
            actions_taken=(),
        ),
        CaseReopened(event_id=f"x-{i}", case_id=case_id, occurred_at=at, reason="back"),
    ]


def counts(settings: Settings) -> tuple[int, int, int]:
    with psycopg.connect(database_urls(settings).app) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE reopen_count = 1), "
            "coalesce(max(reopen_count), 0) FROM case_state"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def start(settings: Settings, log_name: str) -> subprocess.Popen[bytes]:
    return spawn(settings, "projections.worker", "readmodels", log_name)


def test_sigkill_mid_stream_loses_and_doubles_nothing(settings: Settings) -> None:
    codec = Codec.load()
    producer = Producer(producer_config(settings))
    for i in range(CASES):
        for event in lifecycle(i):
            value, headers = codec.encode(event)
            producer.produce(
                settings.topic("cases"), key=event.case_id.encode(), value=value, headers=headers
            )
        if i % 500 == 0:
            producer.poll(0)
    producer.flush(60)

    first = start(settings, "case_state-1")
    try:
        eventually(lambda: counts(settings)[0] > 0, what="the projection to start writing")
        os.kill(first.pid, signal.SIGKILL)  # no chance to finish its batch
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = counts(settings)[0]

    second = start(settings, "case_state-2")
    try:
        final = eventually(
            lambda: (c := counts(settings))[1] == CASES and c,
            timeout_s=120,
            what=f"all {CASES} cases reopened exactly once",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    total, reopened_once, max_reopens = final
    assert (total, reopened_once, max_reopens) == (CASES, CASES, 1)
    assert 0 < killed_at < CASES, "the kill must land mid-stream for this test to mean anything"
    with psycopg.connect(database_urls(settings).app) as conn:
        # Every event exactly once in the audit and the timeline, and the chain intact.
        audited = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM audit_log"
        ).fetchone()
        assert audited == (CASES * 3, CASES * 3)
        assert conn.execute("SELECT count(*) FROM case_timeline").fetchone() == (CASES * 3,)
        assert verify(conn).broken is None
        stored = conn.execute(
            "SELECT sum(next_offset) FROM projection_offsets "
            "WHERE consumer = 'projection.readmodels'"
        ).fetchone()
    assert stored is not None and stored[0] == CASES * 3
