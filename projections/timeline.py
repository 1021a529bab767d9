"""``case_timeline``: every event of a case with who did it and a one-line account."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from projections.describe import actor_of, summary_of
from projections.envelope import Envelope
from schemas.events import DeadLettered, PolicyPublished

# Policy documents and dead letters are not part of any case's story.
NOT_CASE_EVENTS = (PolicyPublished, DeadLettered)


class CaseTimelineProjection:
    name: str = "case_timeline"

    def apply(self, cur: psycopg.Cursor, batch: Sequence[Envelope]) -> None:
        with cur.copy(
            "COPY case_timeline (event_id, case_id, occurred_at, topic, partition, "
            "kafka_offset, event_type, actor, summary, detail) FROM STDIN"
        ) as copy:
            for env in batch:
                e = env.event
                if isinstance(e, NOT_CASE_EVENTS):
                    continue
                copy.write_row(
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
                    )
                )
