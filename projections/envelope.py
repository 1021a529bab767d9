"""A decoded record with the position it came from."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import Event


@dataclass(frozen=True, slots=True)
class Envelope:
    topic: str  # full topic name
    partition: int
    offset: int
    key: bytes | None
    event: Event

    @property
    def position(self) -> str:
        """``topic[partition]@offset``, as every log line names a record."""
        return f"{self.topic}[{self.partition}]@{self.offset}"
