"""What processors read off a consumed record besides its value: key, time, position."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from faust.types import Message

from schemas.codec import Headers


class SourceRecord(Protocol):
    """The fields faust's Message and aiokafka's ConsumerRecord share (read-only)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...  # pairs (aiokafka) or a mapping (faust); see schemas.codec


def where(record: SourceRecord) -> str:
    """`topic[partition]@offset`, the prefix of every log line about a record."""
    return f"{record.topic}[{record.partition}]@{record.offset}"


def record_key(record: SourceRecord) -> str | None:
    return record.key.decode("utf-8", "replace") if record.key is not None else None


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
    def of(cls, message: Message, held_at: float) -> HeldRecord:
        return cls(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp=message.timestamp,
            key=message.key,
            value=message.value,
            held_at=held_at,
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
