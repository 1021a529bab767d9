"""A decoded record with the position it came from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from schemas.events import Event
from schemas.jsonform import dumps


@dataclass(frozen=True)
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

    @cached_property
    def payload(self) -> str:
        """The event's JSON form, computed once for every read model that stores it."""
        return dumps(self.event).decode()
