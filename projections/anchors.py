"""Anchors of the audit chain: its heads, signed and published where the database cannot
reach, so that a rewritten or truncated tail of ``audit_log`` is found.

The hash chain alone proves that rows agree with one another, not that they are the rows
that were written: whoever can write the table (its owner, a superuser, with the
append-only trigger disabled) can cut its tail or rewrite a row and recompute every hash
after it, and the chain verifies clean. So the read models publish the head of every chain
they extended — (topic, partition, seq, hash) — at most once every
``audit_anchor_interval_s``, on the ``audit-anchors`` topic, which they alone write and
nothing projects. Each record carries an HMAC under a key derived from the event-id key
(``infra.secrets.anchor_key``), which is not in the database: an attacker holding only the
database can neither forge nor move an anchor. ``casegate audit verify`` reads them back:
the latest anchor of each chain must name a row that exists with that very hash (a hash
commits to every row before it, so the whole chain up to the anchor is the one written),
and no chain may end before its latest anchor.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from infra.kafka import consumer_config
from infra.settings import Settings

log = logging.getLogger(__name__)

ANCHORS = "audit-anchors"  # logical topic name (infra.topics.TOPICS)
Chain = tuple[str, int]  # (full topic name, partition)


@dataclass(frozen=True)
class Anchor:
    """The head of one chain as it was committed: its last row's seq and hash."""

    topic: str
    partition: int
    seq: int
    hash: str
    at: str  # when it was published (ISO 8601, UTC)


def sign(key: bytes, heads: dict[Chain, tuple[int, str]], at: datetime) -> bytes:
    """One anchors record: the heads, when, and the HMAC of both under ``key``."""
    body = {
        "at": at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "heads": [[t, p, seq, digest] for (t, p), (seq, digest) in sorted(heads.items())],
    }
    return orjson.dumps({**body, "mac": _mac(key, body)})


class ForgedAnchor(ValueError):
    """An anchors record that is not what the read models wrote under this key."""


def read_record(key: bytes, value: bytes | None) -> list[Anchor]:
    """The anchors one record holds; ``ForgedAnchor`` if its signature does not verify."""
    try:
        record = orjson.loads(value or b"")
        body = {"at": record["at"], "heads": record["heads"]}
        mac = record["mac"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ForgedAnchor(f"not an anchors record: {exc}") from None
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, body)):
        raise ForgedAnchor("its signature does not verify (forged, or another key)")
    try:
        return [
            Anchor(str(t), int(p), int(seq), str(h), str(body["at"]))
            for t, p, seq, h in body["heads"]
        ]
    except (TypeError, ValueError) as exc:
        raise ForgedAnchor(f"malformed heads: {exc}") from None


def _mac(key: bytes, body: Mapping[str, object]) -> str:
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


class AnchorPublisher:
    """Collects the heads each committed batch left and publishes them, bounded in rate.

    Only heads of committed transactions are noted (the runner calls ``note`` once a batch
    has committed), so an anchor never names a row that could still roll back.
    """

    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        key: bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = settings.topic(ANCHORS)
        self.producer = producer
        self.key = key
        self.interval_s = settings.audit_anchor_interval_s
        self.clock = clock
        self._pending: dict[Chain, tuple[int, str]] = {}
        self._next = 0.0
        self.published = 0

    def note(self, heads: dict[Chain, tuple[int, str]]) -> None:
        for chain, head in heads.items():
            if head[0] > self._pending.get(chain, (0, ""))[0]:
                self._pending[chain] = head

    def publish_due(self, force: bool = False) -> bool:
        """Publish the heads noted since the last anchor if the interval has passed."""
        now = self.clock()
        if not self._pending or (now < self._next and not force):
            return False
        heads, self._pending = self._pending, {}
        self.producer.produce(
            self.topic,
            key=b"audit-anchors",
            value=sign(self.key, heads, datetime.now(UTC)),
            on_delivery=self._delivered,
        )
        self.producer.poll(0)
        self._next = now + self.interval_s
        self.published += 1
        return True

    def close(self) -> None:
        """The last heads are anchored before the process goes."""
        self.publish_due(force=True)

    @staticmethod
    def _delivered(err: KafkaError | None, msg: Message) -> None:
        # A lost anchor leaves the tail since the one before unproven; the next covers it.
        if err is not None:
            log.warning("audit anchor not delivered: %s", err)


def read_anchors(
    settings: Settings, key: bytes, timeout_s: float = 30.0
) -> tuple[dict[Chain, Anchor], list[str]]:
    """The latest anchor of every chain on the anchors topic, and the records that failed
    their signature (each described with its offset)."""
    tp = TopicPartition(settings.topic(ANCHORS), 0)
    # A throwaway group that never commits: verifying leaves no trace.
    group = f"{settings.topic_prefix}audit-verify-{uuid.uuid4()}"
    consumer = Consumer(consumer_config(settings, group))
    latest: dict[Chain, Anchor] = {}
    forged: list[str] = []
    try:
        _low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        if high <= 0:
            return latest, forged
        consumer.assign([TopicPartition(tp.topic, 0, 0)])
        for msg in _until(consumer, tp, high, timeout_s):
            try:
                anchors = read_record(key, msg.value())
            except ForgedAnchor as exc:
                forged.append(f"{tp.topic}[0]@{msg.offset()}: {exc}")
                continue
            for anchor in anchors:
                chain = (anchor.topic, anchor.partition)
                if anchor.seq >= latest.get(chain, anchor).seq:
                    latest[chain] = anchor
    finally:
        consumer.close()
    return latest, forged


def _until(
    consumer: Consumer, tp: TopicPartition, high: int, timeout_s: float
) -> Iterator[Message]:
    deadline = time.monotonic() + timeout_s
    while consumer.position([tp])[0].offset < high:
        if time.monotonic() > deadline:
            raise KafkaException(f"{tp.topic}: not read to offset {high} within {timeout_s:g}s")
        for msg in consumer.consume(1000, 0.5):
            if msg.error() is None:
                yield msg


HEAD_OF = """
SELECT a.seq, a.hash, h.seq
FROM (SELECT max(seq) AS seq FROM audit_log WHERE topic = %(t)s AND partition = %(p)s) h
LEFT JOIN audit_log a ON a.topic = %(t)s AND a.partition = %(p)s AND a.seq = %(s)s
"""


def check_anchors(conn: psycopg.Connection, latest: dict[Chain, Anchor]) -> list[str]:
    """What in ``audit_log`` disagrees with the anchors: one line per chain."""
    problems = []
    for (topic, partition), anchor in sorted(latest.items()):
        row = conn.execute(HEAD_OF, {"t": topic, "p": partition, "s": anchor.seq}).fetchone()
        stored_hash, head = (row[1], row[2] or 0) if row else (None, 0)
        where = f"{topic}[{partition}]"
        if head < anchor.seq:
            problems.append(
                f"{where}: the chain ends at seq {head}, but seq {anchor.seq} was anchored "
                f"at {anchor.at}: its tail was truncated ({anchor.seq - head} row(s) missing)"
            )
        elif stored_hash is None:
            problems.append(f"{where}: seq {anchor.seq}, anchored at {anchor.at}, is missing")
        elif stored_hash != anchor.hash:
            problems.append(
                f"{where}: seq {anchor.seq} does not have the hash anchored at {anchor.at}: "
                "the chain up to it was rewritten"
            )
    return problems
