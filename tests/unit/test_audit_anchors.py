"""Per-topic deduplication and the audit chain's anchors, without a broker or database.
Against the real ones: tests/integration/test_audit_anchors.py and
tests/integration/hostile/test_forged_ids.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from infra.settings import Settings
from projections.anchors import AnchorPublisher, ForgedAnchor, read_record, sign
from projections.audit import AuditLogProjection
from projections.envelope import Envelope
from schemas.events import CaseOpened

KEY = b"k" * 32
AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
CASES, EXECUTIONS = "p.cases", "p.executions"


def opened(event_id: str, subject: str = "s") -> CaseOpened:
    return CaseOpened(
        event_id=event_id,
        case_id="c1",
        occurred_at=AT,
        source="crm",
        channel="chat",
        queue="q1",
        team="t1",
        subject=subject,
        description="d",
        priority="normal",
        customer={},
        attributes={},
    )


def env(topic: str, event: Any, offset: int = 0) -> Envelope:
    return Envelope(topic, 0, offset, b"c1", event)


def test_the_same_id_on_two_topics_is_two_events() -> None:
    # Given an upstream event carrying the id an internal event on another topic has ...
    decoy = env(CASES, opened("id-1"))
    real = env(EXECUTIONS, opened("id-1"), 1)

    kept = AuditLogProjection(frozenset({CASES})).unique([decoy, real])

    # ... both are kept: an id names an event on its own topic only.
    assert kept == [decoy, real]


def test_a_redelivery_in_a_batch_is_dropped_and_a_different_event_kept_for_a_verdict() -> None:
    audit = AuditLogProjection(frozenset({CASES}))
    first = env(CASES, opened("id-1"))
    again = env(CASES, opened("id-1"), 1)
    other = env(CASES, opened("id-1", subject="not the same"), 2)

    # A byte-identical repeat changes nothing; another event under the id goes on to
    # ``fresh``, which sets it aside as a collision.
    assert audit.unique([first, again, other]) == [first, other]


def test_on_unchecked_topics_a_repeated_id_is_a_redelivery_whatever_its_content() -> None:
    audit = AuditLogProjection(frozenset({CASES}))
    first = env(EXECUTIONS, opened("id-1"))
    retried = env(EXECUTIONS, opened("id-1", subject="retried later"), 1)

    assert audit.unique([first, retried]) == [first]


def test_an_anchor_record_round_trips_under_its_key() -> None:
    heads = {(EXECUTIONS, 2): (7, "a" * 64), (CASES, 0): (3, "b" * 64)}

    anchors = read_record(KEY, sign(KEY, heads, AT))

    assert {(a.topic, a.partition): (a.seq, a.hash) for a in anchors} == heads
    assert {a.at for a in anchors} == {"2026-12-03T09:00:00.000+00:00"}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: {**r, "heads": [[t, p, s + 1, h] for t, p, s, h in r["heads"]]},
        lambda r: {**r, "heads": [[t, p, s, "c" * 64] for t, p, s, h in r["heads"]]},
        lambda r: {**r, "at": "2030-01-01T00:00:00.000+00:00"},
        lambda r: {k: v for k, v in r.items() if k != "mac"},
    ],
    ids=["moved seq", "other hash", "other time", "unsigned"],
)
def test_an_anchor_changed_or_forged_without_the_key_is_refused(tamper: Any) -> None:
    record = orjson.loads(sign(KEY, {(CASES, 0): (3, "b" * 64)}, AT))

    with pytest.raises(ForgedAnchor):
        read_record(KEY, orjson.dumps(tamper(record)))


def test_an_anchor_signed_with_another_key_is_refused() -> None:
    with pytest.raises(ForgedAnchor, match="signature"):
        read_record(KEY, sign(b"x" * 32, {(CASES, 0): (3, "b" * 64)}, AT))


@pytest.mark.parametrize("value", [b"", b"not json", b"[]", b'{"at": 1}'])
def test_garbage_on_the_anchors_topic_is_refused(value: bytes) -> None:
    with pytest.raises(ForgedAnchor):
        read_record(KEY, value)


@dataclass
class Recorded:
    """Stands in for the producer: what the publisher handed it."""

    values: list[bytes] = field(default_factory=list)

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.values.append(value)

    def poll(self, timeout: float) -> int:
        return 0


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def publisher(interval_s: float = 5.0) -> tuple[AnchorPublisher, Recorded, Clock]:
    settings = Settings(
        event_id_key=SecretStr("unit-test-anchor-key"), audit_anchor_interval_s=interval_s
    )
    producer, clock = Recorded(), Clock()
    return AnchorPublisher(settings, producer, KEY, clock), producer, clock  # type: ignore[arg-type]


def heads_of(value: bytes) -> dict[tuple[str, int], tuple[int, str]]:
    return {(a.topic, a.partition): (a.seq, a.hash) for a in read_record(KEY, value)}


def test_anchors_are_published_at_most_once_per_interval_with_the_latest_heads() -> None:
    anchors, producer, clock = publisher(interval_s=5.0)
    anchors.note({(CASES, 0): (1, "h1")})
    assert anchors.publish_due()  # the first heads go out at once

    # Within the interval, heads accumulate and only the highest of each chain is kept.
    clock.now += 1
    anchors.note({(CASES, 0): (2, "h2"), (EXECUTIONS, 1): (4, "e4")})
    anchors.note({(CASES, 0): (3, "h3")})
    assert not anchors.publish_due()
    clock.now += 4
    assert anchors.publish_due()

    assert [heads_of(v) for v in producer.values] == [
        {(CASES, 0): (1, "h1")},
        {(CASES, 0): (3, "h3"), (EXECUTIONS, 1): (4, "e4")},
    ]


def test_nothing_new_publishes_nothing_and_closing_publishes_what_is_left() -> None:
    anchors, producer, _ = publisher()
    assert not anchors.publish_due()
    anchors.note({(CASES, 0): (1, "h1")})
    anchors.publish_due()
    anchors.note({(CASES, 0): (2, "h2")})

    anchors.close()  # within the interval, yet the last heads are not left unanchored

    assert [heads_of(v) for v in producer.values] == [
        {(CASES, 0): (1, "h1")},
        {(CASES, 0): (2, "h2")},
    ]


def test_a_lower_head_never_replaces_a_higher_one() -> None:
    anchors, producer, _ = publisher()
    anchors.note({(CASES, 0): (5, "h5")})
    anchors.note({(CASES, 0): (4, "h4")})
    anchors.publish_due()

    assert heads_of(producer.values[0]) == {(CASES, 0): (5, "h5")}
