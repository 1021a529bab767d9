"""The envelope of a derived event: the fields it carries first (its id derived from a key,
its case, its time, what caused it, what it belongs to), built in one place.

Every processor answer and operator write builds its event as
``SomeEvent(**caused_by(...), <its own fields>)``, so the derivation of ids (which
tests and replays rely on being byte-identical) and the causation link cannot drift
between sites.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from schemas.events import derived_event_id


class Envelope(TypedDict):
    """The `InternalEvent` fields of an event whose id derives from a key."""

    event_id: str
    case_id: str
    occurred_at: datetime
    causation_id: str | None
    correlation_id: str | None


def envelope(
    key: str,
    kind: str,
    *,
    case_id: str,
    occurred_at: datetime,
    causation_id: str | None,
    correlation_id: str | None,
) -> Envelope:
    """The envelope of the event of `kind` whose id derives from `key`.

    The general form, for ids derived from something other than the event they answer
    (an operator's request key, a workflow and version); `caused_by` is the common case.
    """
    return {
        "event_id": derived_event_id(key, kind),
        "case_id": case_id,
        "occurred_at": occurred_at,
        "causation_id": causation_id,
        "correlation_id": correlation_id,
    }


def caused_by(
    cause_event_id: str,
    kind: str,
    *,
    case_id: str,
    occurred_at: datetime,
    correlation_id: str | None,
) -> Envelope:
    """The envelope of the event of `kind` answering the event `cause_event_id`.

    Its id derives from the cause, so a redelivered cause yields the same event (and
    consumers drop the duplicate); the cause is its causation.
    """
    return envelope(
        cause_event_id,
        kind,
        case_id=case_id,
        occurred_at=occurred_at,
        causation_id=cause_event_id,
        correlation_id=correlation_id,
    )
