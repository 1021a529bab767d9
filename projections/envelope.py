"""A decoded record with the position it came from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from schemas.codec import Headers
from schemas.events import Event
from schemas.jsonform import dumps


@dataclass(frozen=True)
class Envelope:
    topic: str  # full topic name
    partition: int
    offset: int
    key: bytes | None
    event: Event
    trace_id: str | None = None  # of the traceparent header the record carried
    # The record as it came, kept only where a dead letter may need it (a collision on a
    # topic whose ids upstream chooses: ``AuditLogProjection.checked_topics``).
    raw: bytes | None = None
    headers: Headers | None = None

    @property
    def position(self) -> str:
        """``topic[partition]@offset``, as every log line names a record."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @cached_property
    def payload(self) -> str:
        """The event's JSON form, computed once for every read model that stores it."""
        return dumps(self.event).decode()


@dataclass(frozen=True)
class Admitted:
    """What the deduplication makes of a batch: the events new to the read models, and
    those that collide with a recorded event (each with the reason to dead-letter it)."""

    fresh: list[Envelope]
    collisions: list[tuple[Envelope, Exception]]


# PostgreSQL text and jsonb cannot hold U+0000; the read models store U+FFFD in its place.
NUL, REPLACEMENT = "\x00", "\ufffd"


def storable(env: Envelope) -> Envelope:
    """`env` with every U+0000 in its event's text replaced, so that PostgreSQL can store
    it (the topic keeps the event as it was). One NUL in a case's text used to fail the
    read models' whole batch on every restart: a stall, not one bad row.
    """
    # orjson writes U+0000 as this escape; without it (the usual case) nothing to do.
    if "\\u0000" not in env.payload:
        return env
    return dataclasses.replace(env, event=_without_nul(env.event))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT)
    if isinstance(value, tuple | list):
        return type(value)(_without_nul(v) for v in value)
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value,
            **{
                f.name: _without_nul(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.init
            },
        )
    return value
