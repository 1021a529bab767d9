"""What the guard keeps in its store, how it reads back, and one guard step over it (pure).

`decide_with_runs` is the guard processor's whole decision for one recommendation record;
`casegate policy dry-run` calls it too, over an in-memory store, so a dry-run decides
exactly as the guard would have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from policy.facts import CaseFacts
from policy.guard_rules import AUTO_AUTHORIZED, decide_guard
from policy.loader import LoadedPolicy
from schemas.events import GuardrailDecided, RecommendationProduced


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
    """Blast radius is counted per workflow and partition (`policy.guard_rules.auto_run_limit`)."""
    return f"{workflow}|{partition}"


@dataclass(frozen=True, slots=True)
class RunsUpdate:
    """The store entry a decision changes: `runs` under `key`, gone after `expires_ms`."""

    key: str
    runs: AutoRuns
    expires_ms: int


def decide_with_runs(
    rec: RecommendationProduced,
    case: CaseFacts,
    partition: int,
    now: datetime,
    policy: LoadedPolicy,
    shards: int,
    stored: Callable[[str], AutoRuns],
) -> tuple[GuardrailDecided, RunsUpdate | None]:
    """Decide `rec` (read from `partition` at `now`) with the automatic runs `stored`
    holds for its workflow and partition; return the decision and the store change.

    Raises what `decide_guard` raises (ValueError) for a recommendation it cannot decide.
    """
    workflow = policy.policy.workflow_for(case.match_fields())
    radius = workflow.blast_radius if workflow is not None else None
    key = runs_key(workflow.name, partition) if workflow and radius else None
    runs = stored(key) if key else AutoRuns()
    decision = decide_guard(
        rec, case, policy, runs.times(excluding=rec.event_id), now, shards=shards
    )
    if decision.outcome != AUTO_AUTHORIZED or key is None or radius is None:
        return decision, None
    kept = runs.add(rec.event_id, now, radius.window_s)
    # Runs older than the window no longer count: the entry may go with the last.
    expires_ms = max(ms for ms, _ in kept.runs) + radius.window_s * 1000
    return decision, RunsUpdate(key, kept, expires_ms)


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
