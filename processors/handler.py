"""What a processor is to the loop: a handler of batches, the records it is handed, the
outbox it fills.

A handler holds no Kafka client and does no I/O of its own (the executor's adapters
and the rollout's evidence reads aside): `handle(batch, step)` reads the batch's decoded
records and its state (`step.state`), decides with the pure rules, and puts what must
happen in `step.out` (events to produce, records to forward, records to dead-letter) and
in `step.state`.
The loop then writes all of it, and the input offsets, in one Kafka transaction.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from infra.deadletter import dead_letter
from infra.telemetry import traceparent_of, with_traceparent
from policy.loader import LoadedPolicy
from processors.store import Due, State
from schemas.codec import Codec
from schemas.events import Event, record_key

WireHeaders = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record as it came off the broker: position and bytes."""

    topic: str  # full topic name
    partition: int
    offset: int
    timestamp: float  # Kafka timestamp (CreateTime), epoch seconds
    key: bytes | None
    value: bytes | None
    headers: WireHeaders | None

    @property
    def where(self) -> str:
        """`topic[partition]@offset`, the prefix of every log line about a record."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def key_text(self) -> str | None:
        return self.key.decode("utf-8", "replace") if self.key is not None else None


@dataclass(frozen=True, slots=True)
class Inbound(Record):
    """A record decoded and checked by the loop: it belongs on its topic and is keyed by
    its case."""

    stream: str  # logical topic name ("cases"), as handlers name their inputs
    event: Event


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str  # full topic name
    key: bytes | None
    value: bytes | None
    headers: WireHeaders | None
    partition: int | None = None  # None: by key (murmur2, as Java clients do)


def own_traceparent(record: Record) -> bytes | None:
    """Tracing off: outputs carry on the traceparent of the record that caused them."""
    return traceparent_of(record.headers)


@dataclass
class Outbox:
    """What one step asks the loop to produce, in order.

    `emit` encodes at once: an event that breaks its schema raises `InvalidEvent` here,
    before anything of it is kept, so the handler can dead-letter the input instead and
    leave its state alone. Outputs caused by a record carry the traceparent `trace` gives
    for it (its span's when tracing is on), so one case stays one trace.
    """

    codec: Codec
    prefix: str
    consumer: str  # the consumer group, named in dead letters
    trace: Callable[[Record], bytes | None] = own_traceparent
    records: list[Outgoing] = field(default_factory=list)
    emitted: int = 0
    dead_lettered: int = 0
    event_types: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)  # dead letters by error class

    def emit(
        self, events: Sequence[Event], cause: Record | None = None, carry: Sequence[str] = ()
    ) -> None:
        """`carry` names headers of `cause` the events keep (intake's re-encoded case
        events keep the history-import marker)."""
        encoded = [(e, *self.codec.encode(e)) for e in events]
        traceparent = self.trace(cause) if cause is not None else None
        kept = [(n, v) for n, v in (cause.headers or ()) if n in carry] if cause and carry else []
        for event, value, own in encoded:
            headers = [*own, *kept]
            self.records.append(
                Outgoing(
                    self.prefix + event.topic,
                    # A policy is keyed by its version (the rollout processor emits them).
                    record_key(event),
                    value,
                    with_traceparent(headers, traceparent),
                )
            )
            self.event_types[event.event_type] += 1
        self.emitted += len(encoded)

    def forward(self, record: Record, stream: str) -> None:
        """Re-publish `record`'s bytes unchanged on `stream`, under its key and headers."""
        headers = with_traceparent(record.headers, self.trace(record))
        self.records.append(Outgoing(self.prefix + stream, record.key, record.value, headers))
        self.emitted += 1

    def reject(self, record: Record, error: Exception, case_id: str = "") -> None:
        """Dead-letter `record` with `error` as the reason; the batch goes on."""
        letter = dead_letter(
            consumer=self.consumer,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=record.headers,
            error=error,
            case_id=case_id,
        )
        value, headers = self.codec.encode(letter)
        self.records.append(
            Outgoing(
                self.prefix + "deadletter",
                record.key,
                value,
                with_traceparent(headers, self.trace(record)),
            )
        )
        self.dead_lettered += 1
        self.reasons[type(error).__name__] += 1


@dataclass
class Step:
    """Everything a handler may use for one batch or one timer tick."""

    state: State
    out: Outbox
    policy: LoadedPolicy | None  # None only for handlers that need none
    now: datetime  # the wall clock when the step began (timers, held records)
    partitions: int  # partitions of each input topic: blast radius is counted per partition
    # Every policy version that was in force, by version (the one that decided a request).
    policies: Mapping[str, LoadedPolicy] = field(default_factory=dict)


class Handler:
    """One processor's decisions; see the module docstring. Subclasses set the class
    attributes and `handle`; the hooks below do nothing unless overridden."""

    component: ClassVar[str]
    # Logical input topic -> the event types that belong there. Anything else read there
    # is dead-lettered by the loop before the handler sees it.
    inputs: ClassVar[Mapping[str, tuple[type[Event], ...]]]
    stores: ClassVar[tuple[str, ...]] = ()
    needs_policy: ClassVar[bool] = True
    # Store -> what its timed entries are ("approvals"): exported as
    # casegate_<what>_pending and casegate_<what>_expiring (due within the hour).
    timed: ClassVar[Mapping[str, str]] = {}

    def handle(self, batch: Sequence[Inbound], step: Step) -> None:
        raise NotImplementedError

    def on_due(self, due: Sequence[Due], step: Step) -> None:
        """Entries whose timer (`Entry.due_ms`) has come."""

    def on_policy(self, timed: Sequence[Due], step: Step) -> None:
        """A new policy came into force (`step.policy`): every timed entry this process
        owns, whatever its timer, for a handler whose open work the policy may end."""

    def start(self, policy: LoadedPolicy | None, stop: threading.Event) -> None:
        """Before the first batch, once the policy is known (the recommender learns here)."""

    # Seconds between two `every` calls; None: the handler has no periodic work.
    every_s: float | None = None

    def every(self, step: Step) -> None:
        """Periodic work (every `every_s`), by the worker that owns input partition 0, in a
        transaction that carries the worker's offsets (a worker that lost it is fenced)."""

    def on_turn(self, policy: LoadedPolicy | None) -> None:
        """Once per turn of the loop, between batches: quick work only."""

    def close(self) -> None:
        """The loop is stopping."""
