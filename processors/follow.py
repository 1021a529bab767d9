"""Reading whole topics outside the consumer group: the policy, the recommender's history.

Every worker of a processor needs all of these, not only its partitions, so a follower
assigns every partition itself (no group, never commits) and reads from the beginning.
`catch_up` reads to where the topic ended when it was called; `poll` takes what has
arrived since, without waiting, so the batch loop can call it every turn.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, OffsetSpec

from infra.kafka import common_config, consumer_config, read_headers
from infra.settings import Settings
from policy.loader import LoadedPolicy, PolicyHistory, PolicyInvalid
from processors.handler import Record
from schemas.codec import Codec, CodecError, InvalidEvent
from schemas.events import PolicyPublished

log = logging.getLogger(__name__)
Apply = Callable[[list[Message]], None]


class TopicFollower:
    """All partitions of some topics, from the beginning, read-committed."""

    def __init__(self, settings: Settings, streams: Sequence[str], label: str) -> None:
        self._consumer = Consumer(
            consumer_config(
                settings,
                f"{settings.topic_prefix}{label}-follower-{uuid.uuid4().hex[:8]}",
                **{
                    "enable.partition.eof": False,
                    # Bounded read-ahead: a follower reads whole topics at start-up.
                    "queued.max.messages.kbytes": 8192,
                },
            )
        )
        self._tps = _all_partitions(self._consumer, [settings.topic(s) for s in streams])
        self._consumer.assign([TP(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in self._tps])
        # One ListOffsets request for every partition's end: asked once per call to
        # `catch_up`, which the recommender makes before each batch it plans.
        self._admin = AdminClient(common_config(settings))

    def catch_up(self, apply: Apply, stop: threading.Event, what: str) -> int:
        """Read up to where every partition ends now (its last stable offset: what a
        read-committed reader can reach); returns how many records were read."""
        ends = self._ends()
        read, reported = 0, time.monotonic()
        while not stop.is_set() and not self._reached(ends):
            messages = self._consumer.consume(5000, 0.2)
            read += len(messages)
            apply(_good(messages))
            if time.monotonic() - reported > 5:
                log.info("%s: %d records read so far", what, read)
                reported = time.monotonic()
        return read

    def poll(self, apply: Apply, limit: int = 5000) -> int:
        messages = self._consumer.consume(limit, 0)
        if messages:
            apply(_good(messages))
        return len(messages)

    def close(self) -> None:
        self._consumer.close()

    def _ends(self) -> dict[tuple[str, int], int]:
        asked = self._admin.list_offsets(
            {TP(tp.topic, tp.partition): OffsetSpec.latest() for tp in self._tps},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=30,
        )
        return {(tp.topic, tp.partition): future.result().offset for tp, future in asked.items()}

    def _reached(self, ends: dict[tuple[str, int], int]) -> bool:
        # position() moves past transaction markers too, which no record reports.
        positions = {
            (tp.topic, tp.partition): tp.offset for tp in self._consumer.position(self._tps)
        }
        return all(end <= 0 or positions.get(tp, -1) >= end for tp, end in ends.items())


class PolicyFollower:
    """The newest valid policy published on the `policy` topic, for one process.

    A document that does not load (or whose version or sha256 differ from what its event
    says) is kept aside in `rejected` for the loop to dead-letter; the policy in force
    stays. A processor never decides with a policy it made up: until one is read, the
    loop waits.
    """

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self._codec = codec
        self._follower = TopicFollower(settings, ["policy"], "policy")
        self._history = PolicyHistory()
        self.rejected: list[tuple[Record, Exception]] = []

    @property
    def latest(self) -> LoadedPolicy | None:
        return self._history.latest

    @property
    def versions(self) -> Mapping[str, LoadedPolicy]:
        """Every version that came into force, by version."""
        return self._history.versions

    def catch_up(self, stop: threading.Event) -> LoadedPolicy | None:
        """Read the topic to its end, then wait until a valid policy is known."""
        self._follower.catch_up(self._apply, stop, "policies")
        warned = False
        while self.latest is None and not stop.is_set():
            if not warned:
                log.warning(
                    "no policy published yet: records wait for a policy, nothing is decided "
                    "until one is (`casegate policy publish FILE`)"
                )
                warned = True
            self._follower.poll(self._apply)
            stop.wait(0.2)
        return self.latest

    def poll(self) -> bool:
        """Take policies published since; True when the one in force changed."""
        before = self.latest
        self._follower.poll(self._apply, limit=100)
        return self.latest is not before

    def close(self) -> None:
        self._follower.close()

    def _apply(self, messages: list[Message]) -> None:
        for msg in messages:
            record = as_record(msg)
            try:
                event = self._codec.decode(record.value, read_headers(msg))
                if not isinstance(event, PolicyPublished):
                    raise InvalidEvent(f"{event.event_type} does not belong on the policy topic")
                loaded = self._history.admit(record.key, event)
            except (CodecError, PolicyInvalid) as exc:
                log.warning("%s: policy refused: %s", record.where, exc)
                self.rejected.append((record, exc))
                continue
            log.info(
                "%s: policy %s (sha256 %.12s) by %s is in force",
                record.where,
                loaded.version,
                loaded.sha256,
                event.author,
            )


def as_record(msg: Message) -> Record:
    """The position and bytes of a consumed message (headers read leniently)."""
    try:
        headers = read_headers(msg)
    except CodecError:
        headers = None
    _, ts = msg.timestamp()
    return Record(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        timestamp=ts / 1000,
        key=msg.key(),
        value=msg.value(),
        headers=list(headers) if headers else None,  # type: ignore[arg-type]
    )


def _good(messages: list[Message]) -> list[Message]:
    out = []
    for msg in messages:
        err = msg.error()
        if err is None:
            out.append(msg)
        elif err.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(err)
    return out


def _all_partitions(consumer: Consumer, topics: list[str], wait_s: float = 30.0) -> list[TP]:
    deadline = time.monotonic() + wait_s
    while True:
        meta = consumer.list_topics(timeout=10).topics
        missing = [t for t in topics if t not in meta or not meta[t].partitions]
        if not missing:
            return [TP(t, p) for t in topics for p in sorted(meta[t].partitions)]
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"topics {', '.join(missing)} do not exist; create them with `casegate up`"
            )
        time.sleep(0.2)
