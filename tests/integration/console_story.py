"""A small world for the console's tests: pending reviews for different roles (one with
hostile text), an expired one, a shadow case, a denial, a failed execution and resolved
history over several days, all timed relative to now so that nothing has expired yet."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from console.auth import add_operator
from infra.db import database_urls
from infra.kafka import consumer_config, producer_config
from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    CaseOpened,
    CaseReclassified,
    CaseResolved,
    Event,
    Provenance,
    RecommendationProduced,
    ReviewRecorded,
    SimilarCase,
    record_key,
    utc_now,
)
from tests.integration import story_events
from tests.integration.scenario import policy_event

HOSTILE = '<script>alert("pwned")</script>'
REFUND = ActionSpec(name="refund_payment", params={"amount": 50.0, "order_id": "ORD-17"})
PLAN = ActionSpec(name="change_plan", params={"plan": "basic"})
ESCALATE = ActionSpec(name="escalate_to_specialist", params={"team": "access"})
RESHIP = ActionSpec(name="reship_order", params={"order_id": "ORD-9"})
CLOSE = ActionSpec(name="close_account")
OPERATORS = {
    "sam": ("supervisor",),
    "fay": ("finance_lead",),
    "ann": ("agent",),
}


@dataclass(frozen=True)
class Story:
    now: datetime
    events: list[Event]


def _opened(case: str, queue: str, team: str, at: datetime, subject: str) -> CaseOpened:
    return CaseOpened(
        event_id=f"open-{case}",
        case_id=case,
        occurred_at=at,
        source="helpdesk",
        channel="email",
        queue=queue,
        team=team,
        subject=subject,
        description=f"Customer writes: {HOSTILE} please fix my account.",
        priority="high",
        customer={"email": "someone@example.com"},
        attributes={"order_id": "ORD-17"},
    )


def _recommended(
    case: str, rec: str, action: ActionSpec, category: str, at: datetime, workflow: str
) -> RecommendationProduced:
    return story_events.recommendation_made(
        case,
        rec,
        action,
        category,
        at,
        workflow,
        summary=f"Refund the double charge on {case} {HOSTILE}",
        confidence=0.87,
        similar=SimilarCase(case_id="h1", similarity=0.91),
        rationale=f"4 of 5 similar cases were {category} and were refunded",
        provenance=Provenance(
            recommender="baseline", fields_seen=("subject", "description"), input_sha256="ab" * 32
        ),
    )


_decided = story_events.guard_decided


def _pending(
    case: str,
    rec: str,
    action: ActionSpec,
    at: datetime,
    approvals: int,
    roles: tuple[str, ...],
    subject: str,
    queue: str = "billing",
    workflow: str = "billing",
    expires: datetime | None = None,
    reasons: tuple[str, ...] = (),
    category: str = "double_charge",
) -> list[Event]:
    team = {"billing": "finance", "identity": "access"}[queue]
    return [
        _opened(case, queue, team, at, subject),
        _recommended(case, rec, action, category, at, workflow),
        _decided(
            case,
            rec,
            "approval_required",
            workflow,
            "assisted",
            action,
            at,
            approvals,
            roles,
            expires or at + timedelta(hours=8),
            reasons,
        ),
    ]


def story() -> Story:
    now = utc_now()
    day = timedelta(days=1)
    events: list[Event] = [policy_event()]
    # h1: resolved history three days ago, accepted by two approvers.
    h0 = now - 3 * day
    events += _pending(
        "h1", "r-h1", REFUND, h0, 2, ("supervisor", "finance_lead"), "Charged twice for March"
    )
    events += [
        _reviewed("h1", "r-h1", "sam", h0 + timedelta(minutes=5), 1),
        _reviewed("h1", "r-h1", "fay", h0 + timedelta(minutes=9), 2),
        approval("h1", "r-h1", ("sam", "fay"), REFUND, h0 + timedelta(minutes=9)),
        resolved("h1", h0 + timedelta(minutes=30), "double_charge", (REFUND,), code="refunded"),
    ]
    # f1: two days ago; approved, but the execution timed out.
    f0 = now - 2 * day
    events += _pending(
        "f1",
        "r-f1",
        PLAN,
        f0,
        1,
        ("supervisor", "finance_lead"),
        "Plan downgrade did not apply",
        category="plan_change",
    )
    events += [
        _reviewed("f1", "r-f1", "sam", f0 + timedelta(minutes=3), 1, required=1),
        approval("f1", "r-f1", ("sam",), PLAN, f0 + timedelta(minutes=3)),
        *timed_out(
            "f1", "r-f1", "x-f1", PLAN, f0 + timedelta(minutes=3), f0 + timedelta(minutes=4)
        ),
    ]
    # d1: yesterday; the guard denied a prohibited action.
    d0 = now - day
    events += [
        _opened("d1", "billing", "finance", d0, "Close my account now"),
        _recommended("d1", "r-d1", CLOSE, "account_closure", d0, "billing"),
        _decided(
            "d1",
            "r-d1",
            "denied",
            "billing",
            "assisted",
            CLOSE,
            d0,
            reasons=("action_prohibited",),
        ),
    ]
    # s1: shipping in shadow phase, still open: its AI output must stay hidden.
    events += [
        _opened("s1", "shipping", "logistics", now, "Parcel late"),
        _recommended("s1", "r-s1", RESHIP, "delivery_delay", now, "shipping"),
        _decided(
            "s1", "r-s1", "shadowed", "shipping", "shadow", RESHIP, now, reasons=("phase_shadow",)
        ),
    ]
    # Pending now: q1 (hostile subject) and q2 for supervisors and finance leads, q3 for
    # agents only, q4 already expired.
    events += _pending(
        "q1",
        "r-q1",
        REFUND,
        now,
        2,
        ("supervisor", "finance_lead"),
        f"Double charge {HOSTILE} on order ORD-17",
    )
    events += _pending(
        "q2", "r-q2", PLAN, now, 1, ("supervisor", "finance_lead"), "Wants the basic plan"
    )
    events += _pending(
        "q3",
        "r-q3",
        ESCALATE,
        now,
        1,
        ("agent",),
        "Locked out after MFA reset",
        queue="identity",
        workflow="identity_access",
        reasons=("suggest_only",),
    )
    events += _pending(
        "q4",
        "r-q4",
        PLAN,
        now - timedelta(hours=9),
        1,
        ("supervisor", "finance_lead"),
        "Too late to act on",
        expires=now - timedelta(hours=1),
    )
    return Story(now, events)


def _reviewed(
    case: str,
    rec: str,
    actor: str,
    at: datetime,
    received: int,
    required: int = 2,
    verdict: str = "approve",
    action: ActionSpec | None = None,
) -> ReviewRecorded:
    return story_events.review_recorded(
        case, rec, actor, OPERATORS[actor], verdict, received, required, at, action
    )


def overridden(case: str, rec: str, action: ActionSpec, at: datetime) -> ReviewRecorded:
    """Sam, the one approval needed, chose `action` instead of the recommended one."""
    return _reviewed(case, rec, "sam", at, 1, required=1, verdict="override", action=action)


def approval(
    case: str, rec: str, approvers: tuple[str, ...], action: ActionSpec, at: datetime
) -> ApprovalCompleted:
    return story_events.approval_completed(case, rec, "approved", approvers, action, at)


def timed_out(
    case: str, rec: str, ex: str, action: ActionSpec, at: datetime, failed_at: datetime
) -> list[Event]:
    """Sam's approved `action` requested at `at`; the downstream did not answer."""
    return [
        story_events.execution_requested(case, rec, ex, action, "approved", "sam", at),
        story_events.execution_failed(
            case,
            ex,
            action.name,
            failed_at,
            "Timeout",
            retriable=True,
            timed_out=True,
            message="billing system did not answer",
            duration_ms=20000.0,
        ),
    ]


def reclassified(
    case: str, at: datetime, category: str, reason: str | None = None
) -> CaseReclassified:
    """Sam, a supervisor, corrected the case's class."""
    return CaseReclassified(
        event_id=f"rc-{case}",
        case_id=case,
        occurred_at=at,
        review_id=f"rv-{case}",
        actor="sam",
        roles=OPERATORS["sam"],
        category=category,
        reason=reason,
    )


def resolved(
    case: str, at: datetime, category: str, actions: tuple[ActionSpec, ...], code: str = "done"
) -> CaseResolved:
    return CaseResolved(
        event_id=f"res-{case}",
        case_id=case,
        occurred_at=at,
        resolved_by="sam",
        resolution_code=code,
        category=category,
        actions_taken=actions,
    )


def publish(settings: Settings, events: Iterable[Event]) -> int:
    codec = Codec.load()
    producer = Producer(producer_config(settings))
    n = 0
    for event in events:
        value, encoded = codec.encode(event)
        headers: list[tuple[str, str | bytes | None]] = [(k, v) for k, v in encoded]
        producer.produce(
            settings.topic(event.topic), key=record_key(event), value=value, headers=headers
        )
        n += 1
    if producer.flush(30):
        raise AssertionError("the story was not fully published within 30 s")
    return n


def add_operators(settings: Settings) -> dict[str, str]:
    """A token for each of OPERATORS (roles checked against the default policy's)."""
    with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
        known = ("agent", "supervisor", "finance_lead", "admin")
        return {
            name: add_operator(conn, name, roles, known, ttl_s=3600)
            for name, roles in OPERATORS.items()
        }


def read_all(settings: Settings, name: str, timeout_s: float = 20.0) -> list[Event]:
    """Every event on a topic right now: read from the start to the end of each partition."""
    codec = Codec.load()
    consumer = Consumer(
        consumer_config(settings, f"test-read-{uuid.uuid4()}", **{"enable.partition.eof": True})
    )
    topic = settings.topic(name)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    at_end: set[int] = set()
    found: list[Event] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout_s:.0f}s")
            for msg in consumer.consume(500, 0.5):
                err = msg.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                elif err is None:
                    found.append(codec.decode(msg.value(), msg.headers()))
    finally:
        consumer.close()
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ids(events: Sequence[Event]) -> list[str]:
    return [e.event_id for e in events]
