"""Record times and held records: what processors read off a consumed record besides its
event."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.handler import Record
from schemas.codec import Headers


def record_time(timestamp_s: float) -> datetime:
    """A record's Kafka timestamp as the UTC datetime (ms) processors decide at.

    Deciding at the record's own time instead of the wall clock makes a redelivered
    record produce byte-identical events, so a duplicate is harmless everywhere.
    """
    return datetime.fromtimestamp(round(timestamp_s * 1000) / 1000, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldRecord:
    """A consumed record kept in a table until what it needs has arrived.

    Streams read side by side can deliver a record before the one it depends on (a
    recommendation before its CaseOpened, a review before its decision); the record is
    held, whole, and handled when the other arrives, exactly as if it had come later.
    """

    topic: str
    partition: int
    offset: int
    timestamp: float  # the record's Kafka timestamp, seconds
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    held_at: float = 0.0  # wall clock (epoch seconds) when first held

    @classmethod
    def of(cls, record: Record, held_at: float) -> HeldRecord:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp,
            key=record.key,
            value=record.value,
            held_at=held_at,
        )

    def as_record(self) -> Record:
        return Record(
            self.topic, self.partition, self.offset, self.timestamp, self.key, self.value, None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "held_at": self.held_at,
            "key": _b64(self.key),
            "value": _b64(self.value),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeldRecord:
        return cls(
            topic=data["topic"],
            partition=data["partition"],
            offset=data["offset"],
            timestamp=data["timestamp"],
            held_at=data["held_at"],
            key=_unb64(data["key"]),
            value=_unb64(data["value"]),
        )


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
