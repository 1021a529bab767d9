"""``case_timeline``: every event of a case with who did it and a one-line account."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections.describe import actor_of, summary_of
from projections.envelope import Envelope
from projections.staging import AppendOnly
from schemas.events import AccessReviewed, CustomerErased, DeadLettered, PolicyPublished

# Policy documents, dead letters, erasures and access reviews are not part of any case's story.
NOT_CASE_EVENTS = (PolicyPublished, DeadLettered, CustomerErased, AccessReviewed)
COLUMNS = (
    "event_id",
    "case_id",
    "occurred_at",
    "topic",
    "partition",
    "kafka_offset",
    "event_type",
    "actor",
    "summary",
    "detail",
    "trace_id",
)


class CaseTimelineProjection(AppendOnly):
    name: str = "case_timeline"
    columns = COLUMNS

    @staticmethod
    def plan(batch: Sequence[Envelope]) -> list[tuple[Any, ...]]:
        """One row per case event."""
        return [
            (
                e.event_id,
                e.case_id,
                e.occurred_at,
                env.topic,
                env.partition,
                env.offset,
                e.event_type,
                actor_of(e),
                summary_of(e),
                env.payload,
                env.trace_id,
            )
            for env in batch
            if not isinstance(e := env.event, NOT_CASE_EVENTS)
        ]
