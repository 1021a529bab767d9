"""The first slice through the real system: an outside producer's CaseOpened reaches
case_state through the intake processor and the case_state projection, and garbage on the
way is dead-lettered without stopping anything."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import psycopg
from confluent_kafka import Producer

from infra.db import database_urls
from infra.kafka import producer_config
from infra.settings import PROJECT_ROOT, Settings
from schemas.codec import Codec
from schemas.events import DeadLettered
from tests.integration.helpers import eventually, read_topic, running


def outside_case_opened(case_id: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """What an upstream team would write with only fastavro and the .avsc file."""
    named: dict = {}
    fastavro.parse_schema(
        json.loads(Path(PROJECT_ROOT, "schemas/_types.avsc").read_text()), named_schemas=named
    )
    schema = fastavro.parse_schema(
        json.loads(Path(PROJECT_ROOT, "schemas/CaseOpened.avsc").read_text()), named_schemas=named
    )
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(
        body,
        schema,
        {
            "event_id": f"ev-{case_id}",
            "case_id": case_id,
            "occurred_at": datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
            "source": "crm",
            "channel": "email",
            "queue": "identity",
            "team": "tier1",
            "issue_class": None,
            "subject": "Cannot log in",
            "description": "Locked out again.",
            "priority": "normal",
            "customer": {"id": "cu-1", "email": "ann@example.com"},
            "attributes": {"product": "portal", "amount": 12.5, "seats": 3},
        },
    )
    return b"\xc3\x01" + fingerprint + body.getvalue(), [("event_type", b"CaseOpened")]


def case_rows(settings: Settings) -> dict[str, tuple]:
    with psycopg.connect(database_urls(settings).app) as conn:
        rows = conn.execute(
            "SELECT case_id, status, queue, channel, subject FROM case_state"
        ).fetchall()
    return {r[0]: r for r in rows}


def test_outside_case_reaches_case_state_and_garbage_is_dead_lettered(settings: Settings) -> None:
    producer = Producer(producer_config(settings))
    cases = settings.topic("cases")
    # One partition, so the garbage sits between the two cases in the log.
    value, headers = outside_case_opened("case-a")
    producer.produce(cases, key=b"case-a", value=value, headers=headers, partition=0)
    producer.produce(
        cases,
        key=b"case-x",
        value=b"\x00garbage that is not avro",
        headers=[("event_type", b"CaseOpened")],
        partition=0,
    )
    value, headers = outside_case_opened("case-b")
    producer.produce(cases, key=b"case-b", value=value, headers=headers, partition=0)
    producer.flush(30)

    with running(settings, ("processors.worker", "intake"), ("projections.worker", "readmodels")):
        rows = eventually(
            lambda: (r := case_rows(settings)) and len(r) == 2 and r,
            what="both cases in case_state",
        )
        letters = read_topic(settings, "deadletter", expect=2)

    assert rows["case-a"] == ("case-a", "open", "identity", "email", "Cannot log in")
    assert rows["case-b"][1] == "open"
    codec = Codec.load()
    decoded = [codec.decode(m.value(), m.headers()) for m in letters]
    assert all(isinstance(d, DeadLettered) for d in decoded)
    # The garbage record, dead-lettered by each of its readers with the reason; both kept
    # going (case-b, after it in the same partition, arrived).
    by_consumer = {d.consumer: d for d in decoded if isinstance(d, DeadLettered)}
    assert set(by_consumer) == {
        f"{settings.topic_prefix}projection.readmodels",
        f"{settings.topic_prefix}intake",
    }
    for letter in by_consumer.values():
        assert letter.raw == b"\x00garbage that is not avro"
        assert letter.key == b"case-x"
        assert (letter.source_topic, letter.source_partition, letter.source_offset) == (cases, 0, 1)
        assert letter.error_class == "UndecodableRecord"
        assert letter.reason
