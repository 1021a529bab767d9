"""What the intake processor accepts from upstream services (pure; no Kafka here).

Upstream services own the ``upstream`` topic; intake checks that each record tells a coherent
story about its case before anything downstream trusts it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass, replace
from enum import Enum

from schemas.events import CaseOpened, CaseReopened, CaseResolved, CaseUpdated, Event
from schemas.jsonform import dumps
from schemas.names import actions_taken_problem

UPSTREAM = (CaseOpened, CaseUpdated, CaseResolved, CaseReopened)

# Every string of one upstream event together (subject, description, customer, attributes,
# changes, notes, keys included): a long complaint is a few thousand characters, and every
# component downstream (redaction, the model, the read models) pays for each one.
MAX_TEXT_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class KnownCase:
    """What intake remembers of a case (its `cases` store, one entry per case)."""

    status: str  # open | resolved | reopened
    opened_event_id: str
    # sha256 of the opening event's JSON form, to tell its redelivery from another event
    # under its id (None: remembered before intake kept it; such a repeat is a redelivery).
    opened_digest: str | None = None
    # Whose data key seals the case's events (policy.sealing.customer_ref; None: kept
    # before intake sealed, and such a case's later events are sealed under a key of its own).
    customer_ref: str | None = None


def content_digest(event: Event) -> str:
    """What an event says, as one hash: equal for a redelivery, whatever the bytes."""
    return hashlib.sha256(dumps(event)).hexdigest()


class Verdict(Enum):
    ACCEPT = "accept"
    DUPLICATE = "duplicate"  # redelivery of an event already taken: drop quietly
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    reason: str = ""


def _texts(value: object, path: str) -> Iterator[tuple[str, int]]:
    """(dotted path, length) of every string in `value`, map keys included."""
    if isinstance(value, str):
        yield path, len(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield path, len(str(key))  # keys count under the map itself
            yield from _texts(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            yield from _texts(item, f"{path}[{index}]")
    elif is_dataclass(value) and not isinstance(value, type):
        for field in fields(value):
            name = f"{path}.{field.name}" if path else field.name
            yield from _texts(getattr(value, field.name), name)


def text_too_long(event: Event, limit: int) -> str | None:
    """The refusal reason when the strings of `event` hold more than `limit` characters."""
    sizes: dict[str, int] = {}
    for path, size in _texts(event, ""):
        sizes[path] = sizes.get(path, 0) + size
    total = sum(sizes.values())
    if total <= limit:
        return None
    largest = max(sizes, key=sizes.__getitem__)
    return (
        f"text_too_long: {largest} has {sizes[largest]} chars, the event {total}; "
        f"limit {limit} (CASEGATE_MAX_TEXT_CHARS)"
    )


def check(
    known: KnownCase | None,
    event: Event,
    key: str | None,
    max_text_chars: int = MAX_TEXT_CHARS,
) -> Check:
    """Is ``event`` (read under ``key``) a valid next step for the case ``known``?"""
    if not isinstance(event, UPSTREAM):
        return Check(Verdict.REJECT, f"{event.event_type} does not belong on the cases topic")
    if (too_long := text_too_long(event, max_text_chars)) is not None:
        return Check(Verdict.REJECT, too_long)
    if isinstance(event, CaseResolved) and (
        bad_name := actions_taken_problem(a.name for a in event.actions_taken)
    ):
        # The catalog's rule: a name it could never hold would be history nobody can
        # learn from or align with, so it is refused here with the rule, not later.
        return Check(Verdict.REJECT, bad_name)
    if key != event.case_id:
        return Check(
            Verdict.REJECT,
            f"record key {key!r} differs from case_id {event.case_id!r}; "
            "upstream records must be keyed by case_id",
        )
    if isinstance(event, CaseOpened):
        if known is None:
            return Check(Verdict.ACCEPT)
        if known.opened_event_id == event.event_id:
            if known.opened_digest in (None, content_digest(event)):
                return Check(Verdict.DUPLICATE)
            return Check(
                Verdict.REJECT,
                f"event_id_collision: CaseOpened {event.event_id} differs from the one that "
                f"opened case {event.case_id} under the same id",
            )
        return Check(
            Verdict.REJECT,
            f"case {event.case_id} was already opened by event {known.opened_event_id}",
        )
    if known is None:
        return Check(Verdict.REJECT, f"unknown case {event.case_id}: no CaseOpened seen")
    if isinstance(event, CaseReopened) and known.status != "resolved":
        return Check(
            Verdict.REJECT,
            f"case {event.case_id} is {known.status}, not resolved; "
            "only a resolved case can be reopened",
        )
    return Check(Verdict.ACCEPT)


def evolve(
    known: KnownCase | None, event: Event, customer_ref: str | None = None
) -> KnownCase | None:
    """The case after an accepted event (`customer_ref`: whose key seals an opening)."""
    if isinstance(event, CaseOpened):
        return KnownCase("open", event.event_id, content_digest(event), customer_ref)
    if known is None:
        return None
    if isinstance(event, CaseResolved):
        return replace(known, status="resolved")
    if isinstance(event, CaseReopened):
        return replace(known, status="reopened")
    return known
