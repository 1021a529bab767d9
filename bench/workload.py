"""The events every benchmark moves, built deterministically and encoded once, so producing
them costs no encoding and every run (and every baseline) reads the very same bytes.

Cases use one vocabulary per queue and a resolved history in the same words, so the
baseline recommender finds real neighbours and proposes actions: billing cases land in the
assisted `billing` workflow of policy/default.yaml and their decisions are
`approval_required` (an approval_queue row), identity cases are bounded, shipping shadow.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from infra.kafka import producer_config
from infra.settings import Settings
from infra.topics import produced_to
from policy.loader import default_policy_path, load_policy_file
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    CaseOpened,
    CaseResolved,
    Event,
    GuardrailDecided,
    PolicyPublished,
    Provenance,
    RecommendationProduced,
    SimilarCase,
    record_key,
)


@dataclass(frozen=True)
class Queue:
    name: str
    team: str
    category: str
    action: ActionSpec
    words: tuple[str, ...]


QUEUES = (
    Queue(
        "identity",
        "access",
        "login_failure",
        ActionSpec(name="reset_password", params={"method": "email_link"}),
        (
            "password",
            "login",
            "locked",
            "reset",
            "code",
            "sms",
            "account",
            "sign",
            "expired",
            "token",
        ),
    ),
    Queue(
        "billing",
        "finance",
        "double_charge",
        ActionSpec(name="refund_payment", params={"amount": 10.5, "order_id": "ORD-1"}),
        (
            "charge",
            "refund",
            "invoice",
            "twice",
            "card",
            "payment",
            "billed",
            "amount",
            "statement",
            "duplicate",
        ),
    ),
    Queue(
        "shipping",
        "logistics",
        "late_delivery",
        ActionSpec(name="reship_order", params={"order_id": "ORD-1"}),
        (
            "parcel",
            "delivery",
            "late",
            "courier",
            "tracking",
            "address",
            "package",
            "shipment",
            "arrived",
            "missing",
        ),
    ),
)
BILLING = QUEUES[1]
COMMON = ("please", "help", "order", "since", "yesterday", "again", "still", "today")
START = datetime(2026, 11, 1, tzinfo=UTC)


# Kafka headers as the codec makes them; typed wide because confluent-kafka's stub wants a
# wider element type than the codec's list of (str, bytes).
WireHeaders = list[Any]


@dataclass(frozen=True)
class Encoded:
    """One record ready to send: topic (logical name), key, value, headers."""

    topic: str
    key: bytes
    value: bytes
    headers: WireHeaders


def _text(rng: random.Random, queue: Queue, words: int = 24) -> str:
    # Three in four words from the queue's vocabulary: similar enough to vote, noisy enough
    # that the index does real work.
    return " ".join(
        rng.choice(queue.words) if rng.random() < 0.75 else rng.choice(COMMON) for _ in range(words)
    )


def case_opened(
    i: int, queue: Queue, rng: random.Random, *, prefix: str, at: datetime
) -> CaseOpened:
    text = _text(rng, queue)
    return CaseOpened(
        event_id=f"{prefix}-{i}",
        case_id=f"{prefix}-case-{i:07d}",
        occurred_at=at,
        source="bench",
        channel="web",
        queue=queue.name,
        team=queue.team,
        issue_class=None,
        subject=text[:60],
        description=text,
        priority="normal",
        customer={"id": f"cu-{i}", "email": f"user{i}@example.com"},
        attributes={"order_id": f"ORD-{i}", "amount": 10.5},
    )


def case_events(n: int, seed: int = 1, queues: tuple[Queue, ...] = QUEUES) -> list[CaseOpened]:
    """``n`` CaseOpened (~400 bytes encoded), round-robin over ``queues``."""
    rng = random.Random(seed)
    return [
        case_opened(
            i,
            queues[i % len(queues)],
            rng,
            prefix=f"bench{seed}",
            at=START + timedelta(milliseconds=i),
        )
        for i in range(n)
    ]


def history_events(per_queue: int = 150, seed: int = 99) -> list[Event]:
    """Resolved cases the baseline learns from: each queue's category and action."""
    rng = random.Random(seed)
    out: list[Event] = []
    at = START - timedelta(days=7)
    for i in range(per_queue * len(QUEUES)):
        queue = QUEUES[i % len(QUEUES)]
        opened = case_opened(i, queue, rng, prefix="hist", at=at + timedelta(seconds=i))
        out.append(opened)
        out.append(
            CaseResolved(
                event_id=f"hist-resolved-{i}",
                case_id=opened.case_id,
                occurred_at=opened.occurred_at + timedelta(hours=1),
                resolved_by="agent.bench",
                resolution_code="done",
                category=queue.category,
                actions_taken=(queue.action,),
            )
        )
    return out


def policy_event() -> PolicyPublished:
    """policy/default.yaml as published (billing assisted, identity bounded, shipping shadow)."""
    loaded = load_policy_file(default_policy_path())
    return PolicyPublished(
        event_id="bench-policy-1",
        case_id="policy",
        occurred_at=START - timedelta(days=30),
        version=loaded.version,
        sha256=loaded.sha256,
        author="bench",
        document=loaded.text,
    )


def replay_mix(cases: int, codec: Codec) -> Iterator[Encoded]:
    """What the read models see from a running system: per case its CaseOpened, its
    RecommendationProduced and its GuardrailDecided (three records per case).

    Building and encoding a million events takes minutes in Python, longer than replaying
    them, so each queue's three events are encoded once with a fixed-width placeholder in
    every id, and the placeholder is replaced by the case number. Avro strings carry their
    length, and the width never changes, so every record is a valid, distinct event.
    """
    if cases >= 10**ID_WIDTH:
        raise ValueError(f"at most {10**ID_WIDTH - 1} cases")
    templates = [encode(codec, _mix_template(queue)) for queue in QUEUES]
    # A generator: a million records held at once would cost the bench ~0.6 GB.
    for i in range(cases):
        number = b"%0*d" % (ID_WIDTH, i)
        for t in templates[i % len(templates)]:
            yield Encoded(
                t.topic,
                t.key.replace(PLACEHOLDER, number),
                t.value.replace(PLACEHOLDER, number),
                t.headers,
            )


ID_WIDTH = 8
PLACEHOLDER = b"#" * ID_WIDTH


def _mix_template(queue: Queue) -> list[Event]:
    mark = PLACEHOLDER.decode()
    version = load_policy_file(default_policy_path()).version
    opened = case_opened(0, queue, random.Random(queue.name), prefix="replay", at=START)
    opened = replace(opened, event_id=f"replay-open-{mark}", case_id=f"replay-case-{mark}")
    rec_id = f"replay-rec-{mark}"
    rec = RecommendationProduced(
        event_id=f"replay-rp-{mark}",
        case_id=opened.case_id,
        occurred_at=START,
        causation_id=opened.event_id,
        correlation_id=opened.event_id,
        recommendation_id=rec_id,
        workflow=queue.name,
        summary=opened.subject,
        category=queue.category,
        confidence=0.8,
        similar_cases=(SimilarCase(case_id="hist-case-0000001", similarity=0.7),),
        action=queue.action,
        rationale="3 of 4 similar cases agree",
        provenance=Provenance(
            recommender="baseline",
            model="tfidf-knn-v1",
            policy_version=version,
            fields_seen=("subject",),
            input_sha256="ab" * 32,
        ),
    )
    decided = GuardrailDecided(
        event_id=f"replay-gd-{mark}",
        case_id=opened.case_id,
        occurred_at=START,
        causation_id=rec.event_id,
        correlation_id=opened.event_id,
        decision_id=f"replay-dec-{mark}",
        recommendation_id=rec_id,
        workflow=queue.name,
        phase="assisted",
        outcome="approval_required",
        reasons=("needs_approval",),
        action=queue.action,
        policy_version=version,
        approvals_required=1,
        eligible_roles=("supervisor",),
        expires_at=START + timedelta(hours=8),
    )
    return [opened, rec, decided]


def encode(codec: Codec, events: Iterable[Event], via_intake: bool = False) -> list[Encoded]:
    """Encode once, up front: producing then measures Kafka, not fastavro. `via_intake`:
    case events go to the intake topic, as upstream services send them (else straight
    to `cases`, for a stage measured without intake)."""
    return [
        Encoded(produced_to(e) if via_intake else e.topic, record_key(e), *codec.encode(e))
        for e in events
    ]


def produce(settings: Settings, records: Iterable[Encoded]) -> int:
    """Publish pre-encoded records to their topics and wait for every ack; bytes sent."""
    # Same partitioner as the processors (infra.kafka), so a case's records share a partition.
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    sent = 0
    for r in records:
        while True:
            try:
                producer.produce(
                    settings.topic(r.topic), key=r.key, value=r.value, headers=r.headers
                )
                break
            except BufferError:
                producer.poll(0.05)
        sent += len(r.value)
    if producer.flush(120):
        raise RuntimeError("workload records not acknowledged within 120 s")
    return sent
