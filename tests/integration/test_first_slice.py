"""The first slice through the real system: an outside producer's CaseOpened reaches
case_state through the intake processor and the case_state projection, and garbage on the
way is dead-lettered without stopping anything."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import psycopg
from confluent_kafka import Producer

from infra.db import database_urls
from infra.kafka import partition_for, producer_config
from infra.keys import Revealer
from infra.settings import PROJECT_ROOT, Settings
from schemas.codec import Codec
from schemas.events import CaseOpened, DeadLettered
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


def same_partition_keys(settings: Settings, count: int) -> list[str]:
    """Case ids whose records all land on one partition (Kafka's default partitioner)."""
    found: dict[int, list[str]] = {}
    for i in range(1000):
        key = f"case-{i}"
        same = found.setdefault(partition_for(key.encode(), settings.partitions), [])
        same.append(key)
        if len(same) == count:
            return same
    raise AssertionError("no keys share a partition")


def test_outside_case_reaches_case_state_and_garbage_is_dead_lettered(settings: Settings) -> None:
    producer = Producer(producer_config(settings))
    upstream = settings.topic("upstream")
    a, x, b = same_partition_keys(settings, 3)
    partition = partition_for(a.encode(), settings.partitions)
    # One partition, so the garbage sits between the two cases in the log.
    value, headers = outside_case_opened(a)
    producer.produce(upstream, key=a.encode(), value=value, headers=headers, partition=partition)
    producer.produce(
        upstream,
        key=x.encode(),
        value=b"\x00garbage that is not avro",
        headers=[("event_type", b"CaseOpened")],
        partition=partition,
    )
    value, headers = outside_case_opened(b)
    producer.produce(upstream, key=b.encode(), value=value, headers=headers, partition=partition)
    producer.flush(30)

    with running(settings, ("processors.worker", "intake"), ("projections.worker", "readmodels")):
        rows = eventually(
            lambda: (r := case_rows(settings)) and len(r) == 2 and r,
            what="both cases in case_state",
        )
        letters = read_topic(settings, "deadletter", expect=1)
        accepted = read_topic(settings, "cases", expect=2)

    assert rows[a] == (a, "open", "identity", "email", "Cannot log in")
    assert rows[b][1] == "open"
    # Intake re-published the two cases and nothing else: the very events, their personal
    # fields sealed (policy.sealing), which the customer's data key opens again.
    assert sorted(m.key() for m in accepted) == sorted([a.encode(), b.encode()])
    codec = Codec.load()
    revealer = Revealer.of(settings)
    with psycopg.connect(database_urls(settings).app) as conn:
        for m in accepted:
            assert b"ann@example.com" not in m.value() and b"cu-1" not in m.value()
            sealed = codec.decode(m.value(), m.headers())
            assert isinstance(sealed, CaseOpened)
            original = codec.decode(*outside_case_opened(sealed.case_id))
            assert replace(sealed, customer=revealer.reveal(conn, sealed.customer)) == original
    decoded = [codec.decode(m.value(), m.headers()) for m in letters]
    assert all(isinstance(d, DeadLettered) for d in decoded)
    # The garbage record, dead-lettered by intake with the reason, never reached `cases`
    # (so no other reader saw it); intake kept going (case b, after it, arrived).
    by_consumer = {d.consumer: d for d in decoded if isinstance(d, DeadLettered)}
    assert set(by_consumer) == {f"{settings.topic_prefix}intake"}
    for letter in by_consumer.values():
        assert letter.raw == b"\x00garbage that is not avro"
        assert letter.key == x.encode()
        assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
            upstream,
            partition,
            1,
        )
        assert letter.error_class == "UndecodableRecord"
        assert letter.reason
