"""``rollout_events``: every rollout event with its workflow, who and why, and the
evidence (the event's JSON form); ``rollout_proposals`` is a view over it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections.describe import actor_of, policy_version_of, summary_of
from projections.envelope import Envelope
from projections.staging import AppendOnly
from schemas.events import Event

# Every event of these topics names its workflow.
ROLLOUT_TOPICS = ("phase-requests", "rollout")


def _is_rollout(e: Event) -> bool:
    return e.topic in ROLLOUT_TOPICS


COLUMNS = (
    "topic",
    "event_id",
    "kafka_offset",
    "workflow",
    "occurred_at",
    "event_type",
    "proposal_id",
    "actor",
    "from_phase",
    "to_phase",
    "policy_version",
    "reason",
    "summary",
    "detail",
)


class RolloutProjection(AppendOnly):
    name: str = "rollout_events"
    columns = COLUMNS

    @staticmethod
    def plan(batch: Sequence[Envelope]) -> list[tuple[Any, ...]]:
        """One row per rollout event."""
        return [
            (
                env.topic,
                e.event_id,
                env.offset,
                getattr(e, "workflow", ""),
                e.occurred_at,
                e.event_type,
                getattr(e, "proposal_id", None),
                actor_of(e),
                getattr(e, "from_phase", None),
                getattr(e, "to_phase", None),
                policy_version_of(e),
                getattr(e, "reason", None),
                summary_of(e),
                env.payload,
            )
            for env in batch
            if _is_rollout(e := env.event)
        ]
