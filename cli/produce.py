"""`casegate produce FILE.jsonl`: publish events given in the contract's JSON form.

The whole file is validated before anything is sent, and the records go out in one Kafka
transaction, so a bad line or a failed send leaves nothing half-published.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from infra.kafka import producer_config
from infra.settings import Settings
from infra.topics import produced_to
from schemas.codec import Codec
from schemas.codec_errors import CodecError
from schemas.events import CaseResolved, Event, record_key
from schemas.jsonform import loads
from schemas.names import actions_taken_problem


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


class InvalidFile(ValueError):
    def __init__(self, path: Path, errors: list[LineError]) -> None:
        super().__init__(f"{path}: {len(errors)} invalid line(s)")
        self.errors = errors


def read_events(path: Path) -> list[Event]:
    """Every event of a JSONL file, or InvalidFile naming each bad line (blank lines skip)."""
    with path.open("rb") as fh:
        return read_lines(fh, path)


def read_lines(lines: Iterable[bytes], path: Path) -> list[Event]:
    """Every event of JSON lines read from `lines` (a file, stdin), numbered from 1, or
    InvalidFile naming `path` and each bad line."""
    events: list[Event] = []
    errors: list[LineError] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = loads(line)
        except CodecError as exc:
            errors.append(LineError(number, exc.reason))
        except ValueError as exc:  # not JSON at all
            errors.append(LineError(number, f"not valid JSON: {exc}"))
        else:
            # What intake would dead-letter, said before anything is sent.
            if isinstance(event, CaseResolved) and (
                bad := actions_taken_problem(a.name for a in event.actions_taken)
            ):
                errors.append(LineError(number, bad))
            else:
                events.append(event)
    if errors:
        raise InvalidFile(path, errors)
    return events


def publish(
    settings: Settings,
    codec: Codec,
    events: Iterable[Event],
    advance: Callable[[int], None] = lambda n: None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> int:
    """Send events (keyed by case_id; case events to intake, the others to their own
    topic) atomically, each with `headers` besides its own; returns the count."""
    encoded: list[tuple[str, bytes, bytes, Any]] = [
        (settings.topic(produced_to(e)), record_key(e), value, [*own, *headers])
        for e in events
        for value, own in (codec.encode(e),)
    ]
    producer = Producer(
        producer_config(
            settings, **{"transactional.id": f"{settings.topic_prefix}produce-{uuid.uuid4()}"}
        )
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    try:
        for i, (topic, key, value, record_headers) in enumerate(encoded, start=1):
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=record_headers)
                    break
                except BufferError:
                    producer.poll(0.1)  # local queue full: let deliveries drain
            if i % 1000 == 0:
                producer.poll(0)
                advance(1000)
        producer.commit_transaction(60)
    except KafkaException:
        producer.abort_transaction(30)
        raise
    advance(len(encoded) % 1000)
    return len(encoded)
