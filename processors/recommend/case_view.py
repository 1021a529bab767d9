"""The current state of a case as the recommender sees it, folded from `cases` events.

A view is rebuilt from CaseOpened and then each CaseUpdated; it carries the ids a
recommendation needs for its causation (the last event applied) and correlation (the
CaseOpened). Pure: no Kafka, no policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TypeVar

from policy.case_fields import CASE_FIELDS
from policy.routing import routing_fields
from schemas.events import CaseOpened, CaseUpdated, Routing, Scalar

# Top-level string fields a CaseUpdated may change by name (the case's fields but its maps).
TOP_LEVEL_FIELDS = tuple(f for f in CASE_FIELDS if f not in ("customer", "attributes"))
# A new recommendation is due only when the text the model reads changes.
TEXT_FIELDS = ("subject", "description")


V = TypeVar("V")


def _frozen(mapping: Mapping[str, V]) -> Mapping[str, V]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseView:
    """One open case: its upstream fields plus the ids that link events about it."""

    case_id: str
    opened_event_id: str
    last_event_id: str
    source: str
    channel: str
    queue: str
    team: str
    issue_class: str | None = None
    subject: str
    description: str
    priority: str
    customer: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Scalar] = field(default_factory=dict)
    # Event time (epoch ms) of the last event applied: a recommendation for this view
    # learns only from labels given before it (point-in-time). None: no cut-off (a view
    # stored before the field existed, or built by hand).
    as_of_ms: int | None = None

    @property
    def match_fields(self) -> dict[str, str | None]:
        """The fields a workflow's `match` may test (see policy.routing.MATCH_FIELDS)."""
        return routing_fields(self)

    @property
    def routing(self) -> Routing:
        """The structured fields workflows route on, as they are now (no free text, no
        personal data): what a recommendation records for the guard to route on."""
        return Routing(**routing_fields(self))  # type: ignore[arg-type]


def open_view(event: CaseOpened) -> CaseView:
    """The view of a case right after it was opened."""
    return CaseView(
        case_id=event.case_id,
        opened_event_id=event.event_id,
        last_event_id=event.event_id,
        source=event.source,
        channel=event.channel,
        queue=event.queue,
        team=event.team,
        issue_class=event.issue_class,
        subject=event.subject,
        description=event.description,
        priority=event.priority,
        customer=_frozen(event.customer),
        attributes=_frozen(event.attributes),
        as_of_ms=epoch_ms(event.occurred_at),
    )


def apply_update(view: CaseView, event: CaseUpdated) -> CaseView:
    """`view` after `event.changes`.

    Keys name a top-level field (`subject`), a dotted map entry (`attributes.product`,
    `customer.tier`), or anything else, which upstream uses for its own attributes and
    therefore lands in `attributes`. A null clears a map entry or `issue_class`.
    """
    top: dict[str, str | None] = {}
    attributes = dict(view.attributes)
    customer = dict(view.customer)
    for key, value in event.changes.items():
        if key in TOP_LEVEL_FIELDS:
            if value is None and key != "issue_class":
                continue  # the contract makes these fields non-null; keep the old value
            top[key] = None if value is None else str(value)
        elif key.startswith("customer."):
            _set(customer, key.removeprefix("customer."), None if value is None else str(value))
        else:
            _set(attributes, key.removeprefix("attributes."), value)
    return replace(
        view,
        **top,  # type: ignore[arg-type]
        attributes=_frozen(attributes),
        customer=_frozen(customer),
        last_event_id=event.event_id,
        as_of_ms=epoch_ms(event.occurred_at),
    )


def epoch_ms(at: datetime) -> int:
    """An event time as integer epoch milliseconds (the contract's timestamp-millis)."""
    return round(at.timestamp() * 1000)


def _set(target: dict[str, V], key: str, value: V | None) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


def text_changed(before: CaseView, after: CaseView) -> bool:
    """Rule: a CaseUpdated earns a new recommendation only if subject or description moved."""
    return any(getattr(before, f) != getattr(after, f) for f in TEXT_FIELDS)


def recommendation_due(before: CaseView, after: CaseView) -> bool:
    """Rule: an update earns a new recommendation when the text the model reads or the
    fields the case is routed on changed (the processor and the offline eval share it)."""
    return text_changed(before, after) or before.routing != after.routing
