"""A policy dry-run: recorded recommendations decided again under a candidate policy (pure).

Each recommendation goes through `decide_with_runs`, the guard processor's own step, over
an in-memory store of automatic runs kept per workflow and partition exactly as the
guard keeps them, so the blast radius is counted the same way. Nothing is produced: the
decisions only feed a `DryRunReport`, which compares each with the decision recorded for
that recommendation and counts, per workflow and issue class, which outcomes change.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from policy.facts import CaseFacts
from policy.loader import LoadedPolicy
from processors.guard_state import AutoRuns, decide_with_runs
from processors.records import record_time
from schemas.events import GuardrailDecided, RecommendationProduced

# The recorded side of a recommendation the read models hold no decision for yet.
UNDECIDED = "undecided"
# The candidate side of a recommendation the guard cannot decide (no routing fields).
UNDECIDABLE = "undecidable"
EXAMPLES = 5  # case ids kept per change


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One recorded RecommendationProduced with where and when the guard read it."""

    rec: RecommendationProduced
    partition: int
    timestamp_s: float  # the record's Kafka timestamp: the time the guard decided at


@dataclass(frozen=True, slots=True)
class Redecided:
    record: HistoryRecord
    decision: GuardrailDecided | None  # None: undecidable (`reason` says why)
    reason: str | None = None


def redecide(
    history: Iterable[HistoryRecord], candidate: LoadedPolicy, shards: int
) -> Iterator[Redecided]:
    """Decide every recommendation of `history` (each partition in its offset order) under
    `candidate`, as a guard with `shards` partitions would have."""
    # The runs themselves, not their JSON as the guard's changelog keeps them: nothing is
    # stored, so nothing need be converted on every decision.
    store: dict[str, AutoRuns] = {}
    for record in history:
        case = CaseFacts.of_recommendation(record.rec)
        if case is None:
            yield Redecided(record, None, "no routing fields")
            continue
        try:
            decision, change = decide_with_runs(
                record.rec,
                case,
                record.partition,
                record_time(record.timestamp_s),
                candidate,
                shards,
                lambda key: store.get(key, AutoRuns()),
            )
        except ValueError as exc:
            yield Redecided(record, None, str(exc))
            continue
        if change is not None:
            store[change.key] = change.runs
        yield Redecided(record, decision)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The decision the guard actually made for a recommendation (from the read models)."""

    outcome: str
    policy_version: str | None = None
    workflow: str | None = None


@dataclass
class GroupTally:
    decisions: int = 0
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))

    def count(self, before: str, after: str, case_id: str) -> None:
        self.decisions += 1
        if before == after:
            return
        self.changes[(before, after)] += 1
        kept = self.examples[(before, after)]
        if len(kept) < EXAMPLES and case_id not in kept:
            kept.append(case_id)


@dataclass
class DryRunReport:
    """Per (workflow, issue class): how many recommendations were decided again and which
    outcomes changed (recorded -> candidate), with example case ids."""

    candidate_version: str
    candidate_sha256: str
    window_start: datetime
    window_end: datetime
    groups: dict[tuple[str, str], GroupTally] = field(default_factory=dict)
    recorded_versions: Counter[str] = field(default_factory=Counter)

    def add(self, redecided: Redecided, recorded: Recorded | None) -> None:
        rec = redecided.record.rec
        decision = redecided.decision
        before = recorded.outcome if recorded else UNDECIDED
        after = decision.outcome if decision else UNDECIDABLE
        # A case the candidate takes out of scope is still reported under its old workflow.
        workflow = (
            (decision.workflow if decision else None)
            or (recorded.workflow if recorded else None)
            or "-"
        )
        issue_class = (rec.routing.issue_class if rec.routing else None) or "-"
        self.groups.setdefault((workflow, issue_class), GroupTally()).count(
            before, after, rec.case_id
        )
        if recorded is not None and recorded.policy_version:
            self.recorded_versions[recorded.policy_version] += 1

    @property
    def decisions(self) -> int:
        return sum(g.decisions for g in self.groups.values())

    @property
    def changed(self) -> int:
        return sum(sum(g.changes.values()) for g in self.groups.values())

    def totals(self) -> Counter[tuple[str, str]]:
        """Every change over all groups."""
        total: Counter[tuple[str, str]] = Counter()
        for g in self.groups.values():
            total.update(g.changes)
        return total

    def to_json(self) -> dict[str, Any]:
        """The report as the CLI's --json prints it, the console shows it and the
        dry-run table keeps it."""
        return {
            "candidate_version": self.candidate_version,
            "candidate_sha256": self.candidate_sha256,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "decisions": self.decisions,
            "changed": self.changed,
            "recorded_policy_versions": dict(sorted(self.recorded_versions.items())),
            "changes": [
                {"from": before, "to": after, "count": n}
                for (before, after), n in sorted(self.totals().items(), key=_by_count)
            ],
            "groups": [
                {
                    "workflow": workflow,
                    "issue_class": issue_class,
                    "decisions": tally.decisions,
                    "changed": sum(tally.changes.values()),
                    "changes": [
                        {
                            "from": before,
                            "to": after,
                            "count": n,
                            "example_case_ids": sorted(tally.examples[(before, after)]),
                        }
                        for (before, after), n in sorted(tally.changes.items(), key=_by_count)
                    ],
                }
                for (workflow, issue_class), tally in sorted(self.groups.items())
            ],
        }


def build_report(
    redecided: Iterable[Redecided],
    recorded: Mapping[str, Recorded],
    report: DryRunReport,
) -> DryRunReport:
    """Fold decisions into `report`, each against `recorded[recommendation_id]`."""
    for item in redecided:
        report.add(item, recorded.get(item.record.rec.recommendation_id))
    return report


def change_lines(changes: Iterable[Mapping[str, Any]]) -> list[str]:
    """'212 approval_required → auto_authorized' for each change of a report's JSON."""
    return [f"{c['count']} {c['from']} → {c['to']}" for c in changes]


def _by_count(item: tuple[tuple[str, str], int]) -> tuple[int, str, str]:
    (before, after), n = item
    return (-n, before, after)
