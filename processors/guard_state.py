"""What the guard keeps in its store, and how it reads back (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class AutoRuns:
    """One partition's automatic authorizations of one workflow, newest last.

    Each run is kept with the recommendation that caused it, so that a redelivered
    recommendation does not count its own earlier run against itself.
    """

    runs: tuple[tuple[int, str], ...] = ()  # (epoch milliseconds, recommendation event_id)

    def times(self, excluding: str) -> list[datetime]:
        """The run times, without the run of recommendation `excluding` (if any)."""
        return [_at(ms) for ms, rec_id in self.runs if rec_id != excluding]

    def add(self, rec_id: str, at: datetime, window_s: int) -> AutoRuns:
        """These runs plus `rec_id`'s at `at`, minus those out of the window by then.

        Only runs at or before `at - window_s` are dropped; later ones stay, since
        records are not always decided in timestamp order.
        """
        at_ms = _ms(at)
        oldest = _ms(at - timedelta(seconds=window_s))
        kept = tuple(r for r in self.runs if r[0] > oldest and r[1] != rec_id)
        return AutoRuns((*kept, (at_ms, rec_id)))

    def to_json(self) -> list[list[Any]]:
        return [[ms, rec_id] for ms, rec_id in self.runs]

    @classmethod
    def from_json(cls, data: list[list[Any]] | None) -> AutoRuns:
        return cls(tuple((int(ms), str(rec_id)) for ms, rec_id in data or ()))


def runs_key(workflow: str, partition: int) -> str:
    """Blast radius is counted per workflow and partition: see `policy.guard.auto_run_limit`."""
    return f"{workflow}|{partition}"


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
