"""Given a recorded history of recommendations and their recorded decisions, when a
candidate policy is dry-run over it, then each is decided as the guard would (blast radius
counted per partition) and the report counts exactly the outcomes that change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.loader import LoadedPolicy, load_policy_text
from processors.dryrun import (
    UNDECIDED,
    DryRunReport,
    HistoryRecord,
    Recorded,
    build_report,
    change_lines,
    redecide,
)
from schemas.events import ActionSpec, Provenance, RecommendationProduced, Routing

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = """
version: "{version}"
roles:
  agent: {{permissions: [tune]}}
catalog:
  tune:
    params: {{n: {{type: integer, min: 0, max: 10}}}}
    risk: low
    permission: tune
    timeout_s: 5
    adapter: {{kind: log}}
workflows:
  wf:
    match: {{queue: q}}
    phase: bounded
    actions:
      tune: {{mode: auto, bounds: {{n: {{max: {max_n}}}}}, on_out_of_bounds: approve}}
    blast_radius: {{max_auto_runs: {limit}, window_s: 3600}}
model_visibility: {{fields: [subject]}}
audit: {{required_outcomes: []}}
"""


def policy(version: str, max_n: int, limit: int = 100) -> LoadedPolicy:
    return load_policy_text(POLICY.format(version=version, max_n=max_n, limit=limit))


def history(*ns: int, partition: int = 0, queue: str = "q") -> list[HistoryRecord]:
    return [
        HistoryRecord(
            RecommendationProduced(
                event_id=f"ev-{partition}-{i}",
                case_id=f"case-{partition}-{i}",
                occurred_at=T0,
                recommendation_id=f"rec-{partition}-{i}",
                summary="s",
                category="c",
                confidence=0.9,
                similar_cases=(),
                action=ActionSpec(name="tune", params={"n": n}),
                rationale="r",
                provenance=Provenance(
                    recommender="baseline", fields_seen=("subject",), input_sha256="0" * 64
                ),
                routing=Routing(
                    channel="email",
                    queue=queue,
                    team="t",
                    issue_class="ic",
                    priority="normal",
                    source="crm",
                ),
            ),
            partition,
            (T0 + timedelta(seconds=i)).timestamp(),
        )
        for i, n in enumerate(ns)
    ]


def report_for(candidate: LoadedPolicy) -> DryRunReport:
    return DryRunReport(candidate.version, candidate.sha256, T0, T0 + timedelta(hours=1))


def test_loosening_a_bound_moves_exactly_the_recommendations_it_covers() -> None:
    # Given n=3, 6, 8 recorded under max 5 (3 ran automatically, 6 and 8 went to a human)
    records = history(3, 6, 8)
    recorded = {
        "rec-0-0": Recorded("auto_authorized", "v1", "wf"),
        "rec-0-1": Recorded("approval_required", "v1", "wf"),
        "rec-0-2": Recorded("approval_required", "v1", "wf"),
    }
    candidate = policy("v2", max_n=7)

    # When the candidate allows up to 7
    report = build_report(redecide(records, candidate, shards=1), recorded, report_for(candidate))

    # Then only n=6 changes, from a human's approval to an automatic run
    assert (report.decisions, report.changed) == (3, 1)
    [group] = report.to_json()["groups"]
    assert (group["workflow"], group["issue_class"]) == ("wf", "ic")
    assert group["changes"] == [
        {
            "from": "approval_required",
            "to": "auto_authorized",
            "count": 1,
            "example_case_ids": ["case-0-1"],
        }
    ]
    assert change_lines(report.to_json()["changes"]) == ["1 approval_required → auto_authorized"]


def test_the_blast_radius_is_counted_per_partition_as_the_guard_counts_it() -> None:
    # Given a limit of 2 automatic runs per window over 2 partitions: 1 per partition
    candidate = policy("v2", max_n=10, limit=2)
    records = history(1, 1, partition=0) + history(1, partition=1)

    decided = [d.decision for d in redecide(records, candidate, shards=2)]

    # Then the second run in partition 0 exceeds its share; partition 1 still has its own
    assert [d.outcome if d else None for d in decided] == [
        "auto_authorized",
        "approval_required",
        "auto_authorized",
    ]
    assert "blast_radius_exceeded" in decided[1].reasons  # type: ignore[union-attr]


def test_a_recommendation_without_a_recorded_decision_is_reported_as_undecided() -> None:
    candidate = policy("v2", max_n=5)

    report = build_report(redecide(history(3), candidate, 1), {}, report_for(candidate))

    assert report.totals() == {(UNDECIDED, "auto_authorized"): 1}


def test_a_case_taken_out_of_scope_stays_under_its_recorded_workflow() -> None:
    candidate = policy("v2", max_n=5)
    records = history(3, queue="elsewhere")

    report = build_report(
        redecide(records, candidate, 1),
        {"rec-0-0": Recorded("auto_authorized", "v1", "wf")},
        report_for(candidate),
    )

    assert list(report.groups) == [("wf", "ic")]
    assert report.totals() == {("auto_authorized", "out_of_scope"): 1}


def test_a_window_is_a_duration_back_from_now_or_a_date() -> None:
    from console.dryrun import parse_since

    assert parse_since("30d", T0) == T0 - timedelta(days=30)
    assert parse_since("12h", T0) == T0 - timedelta(hours=12)
    assert parse_since("2026-11-01", T0) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="give a duration"):
        parse_since("last month", T0)
