"""The events every benchmark moves: encoded once, so producing them costs no encoding."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from infra.kafka import producer_config
from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import CaseOpened

QUEUES = (("identity", "access"), ("billing", "finance"), ("shipping", "logistics"))
WORDS = (
    "password",
    "login",
    "locked",
    "charge",
    "refund",
    "invoice",
    "parcel",
    "delivery",
    "address",
    "plan",
    "upgrade",
    "code",
    "sms",
    "card",
    "order",
    "late",
    "twice",
)


def case_events(n: int, seed: int = 1) -> list[CaseOpened]:
    """``n`` CaseOpened of realistic size (~400 bytes encoded) across the demo queues."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        queue, team = QUEUES[i % len(QUEUES)]
        text = " ".join(rng.choice(WORDS) for _ in range(24))
        out.append(
            CaseOpened(
                event_id=f"bench-{seed}-{i}",
                case_id=f"case-{seed}-{i:07d}",
                occurred_at=start + timedelta(milliseconds=i),
                source="bench",
                channel="web",
                queue=queue,
                team=team,
                issue_class=None,
                subject=text[:60],
                description=text,
                priority="normal",
                customer={"id": f"cu-{i}", "email": f"user{i}@example.com"},
                attributes={"order_id": f"ORD-{i}", "amount": 10.5},
            )
        )
    return out


def produce(settings: Settings, codec: Codec, events: list[CaseOpened]) -> int:
    """Publish pre-encoded events to ``cases``; returns the bytes sent."""
    encoded = [(e.case_id.encode(), *codec.encode(e)) for e in events]
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    topic = settings.topic("cases")
    sent = 0
    for key, value, headers in encoded:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        sent += len(value)
    producer.flush(120)
    return sent
