"""``case_state``: one row per case with its status, segment and milestones (architecture §4).

Events from other topics can reach the projection before the case's ``CaseOpened`` (topics
are consumed side by side), so every event upserts: a case first seen through a later
event gets a ``pending`` row that its ``CaseOpened`` completes.

What each event does to the row (in the order the batch holds them):

- ``CaseOpened`` fills what is still empty (source, channel, queue, team, class, subject,
  priority, opened_at; a second one, an upstream error, changes nothing it filled) and sets
  status ``open`` if the case had not been opened yet;
- ``CaseResolved``: status ``resolved``, ``resolved_at``, ``actions_taken``,
  ``resolution_count`` + 1, and its category as the class;
- ``CaseReopened``: status ``reopened``, ``resolved_at`` cleared, ``reopen_count`` + 1;
- ``CaseReclassified`` (and ``reclassified``), ``CaseUpdated`` with an ``issue_class``
  change: the class. Of every class-setting event the latest by event time wins, ties to
  the one applied last, whatever order the topics are read in (``issue_class_at``);
- ``CaseUpdated``: each changed column of channel, queue, team, subject, priority, only on
  a row that exists already;
- ``RecommendationProduced``: ``latest_recommendation_id``; ``GuardrailDecided``:
  workflow and phase;
- every event: ``updated_at`` the latest event time; the first meaningful actions
  (``FIRST_ACTIONS``) the earliest ``first_action_at``.

A batch is written in two steps. In Python, each case's events are folded, in order, into
one ``CaseDelta`` (``fold``); its rows go to a staging table in one COPY; then one
``INSERT … SELECT … ON CONFLICT DO UPDATE`` (``MERGE_ROWS``) inserts the cases that had no
row and applies the delta to those that had one. The update is evaluated against the
stored row as locked, never against a copy read earlier, so two writers of one case (two
workers during a rebalance) cannot lose each other's changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from projections.envelope import Envelope
from projections.staging import Load, Stage
from schemas.events import (
    CaseOpened,
    CaseReclassified,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    Event,
    ExecutionSucceeded,
    GuardrailDecided,
    RecommendationProduced,
    ReviewRecorded,
)

# CaseUpdated.changes keys that map onto case_state columns.
UPDATABLE = ("channel", "queue", "team", "subject", "priority")
# What counts as the first meaningful action on a case (metrics: time to first action).
FIRST_ACTIONS = (CaseUpdated, ReviewRecorded, CaseReclassified, ExecutionSucceeded, CaseResolved)
# What CaseOpened fills when still empty.
FILLED_BY_OPEN = ("source", *UPDATABLE)

# case_state's columns, in the order the staging rows hold them.
COLUMNS = (
    "case_id",
    "status",
    "source",
    "channel",
    "queue",
    "team",
    "issue_class",
    "subject",
    "priority",
    "workflow",
    "phase",
    "opened_at",
    "first_action_at",
    "resolved_at",
    "reopen_count",
    "resolution_count",
    "actions_taken",
    "reclassified",
    "latest_recommendation_id",
    "issue_class_at",
    "updated_at",
)
# How the batch changes a row that exists (see CaseDelta).
CONTROL = (
    ("p_status", "text"),
    ("p_open_last", "boolean"),
    *((f"p_{c}_set", "boolean") for c in UPDATABLE),
    *((f"p_{c}", "text") for c in UPDATABLE),
    ("p_class_at", "timestamptz"),
    ("p_class", "text"),
    ("p_class_fill", "text"),
    ("p_decided", "boolean"),
)
STAGE_COLUMNS = (*COLUMNS, *(name for name, _ in CONTROL))

# s: the stored row (locked); d: the batch's delta for the case (projections.staging says
# where d comes from). The INSERT proposes the row as the batch leaves a case that had none;
# on conflict each column combines the two.
MERGE_ROWS = """
INSERT INTO case_state AS s (case_id, status, source, channel, queue, team, issue_class,
    subject, priority, workflow, phase, opened_at, first_action_at, resolved_at,
    reopen_count, resolution_count, actions_taken, reclassified, latest_recommendation_id,
    issue_class_at, updated_at)
SELECT case_id, status, source, channel, queue, team, issue_class, subject, priority,
    workflow, phase, opened_at, first_action_at, resolved_at, reopen_count, resolution_count,
    actions_taken, reclassified, latest_recommendation_id, issue_class_at, updated_at
FROM d
ON CONFLICT (case_id) DO UPDATE SET (status, source, channel, queue, team, issue_class,
    subject, priority, workflow, phase, opened_at, first_action_at, resolved_at,
    reopen_count, resolution_count, actions_taken, reclassified, latest_recommendation_id,
    issue_class_at, updated_at) = (
SELECT
    -- The first CaseOpened opens a case never opened, unless a resolve or reopen follows.
    CASE WHEN d.p_open_last AND s.opened_at IS NULL THEN 'open'
         ELSE coalesce(d.p_status, s.status) END,
    coalesce(s.source, d.source),
    CASE WHEN d.p_channel_set THEN d.p_channel ELSE coalesce(s.channel, d.p_channel) END,
    CASE WHEN d.p_queue_set THEN d.p_queue ELSE coalesce(s.queue, d.p_queue) END,
    CASE WHEN d.p_team_set THEN d.p_team ELSE coalesce(s.team, d.p_team) END,
    -- Latest by event time: a row whose class was never set takes the batch's outcome; else
    -- the batch's latest class-setting event wins if not older than the stored one, and
    -- CaseOpened only fills an empty class.
    CASE WHEN s.issue_class_at IS NULL THEN d.issue_class
         WHEN d.p_class_at >= s.issue_class_at THEN d.p_class
         ELSE coalesce(s.issue_class, d.p_class_fill) END,
    CASE WHEN d.p_subject_set THEN d.p_subject ELSE coalesce(s.subject, d.p_subject) END,
    CASE WHEN d.p_priority_set THEN d.p_priority ELSE coalesce(s.priority, d.p_priority) END,
    CASE WHEN d.p_decided THEN d.workflow ELSE s.workflow END,
    CASE WHEN d.p_decided THEN d.phase ELSE s.phase END,
    coalesce(s.opened_at, d.opened_at),
    least(s.first_action_at, d.first_action_at),
    CASE WHEN d.p_status IS NULL THEN s.resolved_at ELSE d.resolved_at END,
    s.reopen_count + d.reopen_count,
    s.resolution_count + d.resolution_count,
    CASE WHEN d.resolution_count > 0 THEN d.actions_taken ELSE s.actions_taken END,
    s.reclassified OR d.reclassified,
    coalesce(d.latest_recommendation_id, s.latest_recommendation_id),
    CASE WHEN s.issue_class_at IS NULL THEN d.issue_class_at
         WHEN d.p_class_at >= s.issue_class_at THEN d.p_class_at
         ELSE s.issue_class_at END,
    greatest(s.updated_at, d.updated_at)
FROM d WHERE d.case_id = s.case_id)
"""


# A case's row before any event (the columns' defaults; status 'pending', see CaseDelta).
_EMPTY_ROW: dict[str, Any] = {
    **dict.fromkeys(COLUMNS),
    "status": "pending",
    "reopen_count": 0,
    "resolution_count": 0,
    "reclassified": False,
}
_NOT_SET = dict.fromkeys(UPDATABLE, False)
_NO_VALUES: dict[str, Any] = dict.fromkeys(UPDATABLE)


def _first(a: Any, b: Any) -> Any:
    """SQL coalesce of two values."""
    return b if a is None else a


class CaseDelta:
    """One case's events of a batch, folded in order, in two forms.

    ``row``: the row the batch leaves if the case had none. Each event's former upsert
    inserted exactly what its update does to an empty row (status ``pending``, counters 0),
    so the fold applies the updates to such a row; only CaseUpdated's column changes were
    plain UPDATEs, which change nothing while the row does not exist yet (``exists``).

    The ``p_*`` fields: what the batch does to a row that exists, column by column, as
    ``MERGE_ROWS`` reads them. ``p_status`` is the last status a resolve or reopen set;
    ``p_open_last`` says the batch's first CaseOpened came after it (so it opens a case
    stored as never opened); ``p_set``/``p_value``: per updatable column, whether a
    CaseUpdated set it and the value it ends with (CaseOpened fills after it), else what
    CaseOpened fills an empty column with; ``p_class_at``/``p_class``: the latest
    class-setting event (latest time, the later one on ties) and the class it leaves
    (CaseOpened fills after it); ``p_class_fill``: what CaseOpened fills an empty class
    with; ``p_decided``: a GuardrailDecided set workflow and phase.
    """

    __slots__ = (
        "exists",
        "p_class",
        "p_class_at",
        "p_class_fill",
        "p_decided",
        "p_open_last",
        "p_open_seen",
        "p_set",
        "p_status",
        "p_value",
        "row",
    )

    def __init__(self, case_id: str) -> None:
        self.row: dict[str, Any] = _EMPTY_ROW.copy()
        self.row["case_id"] = case_id
        self.row["actions_taken"] = []
        self.exists = False
        self.p_status: str | None = None
        self.p_open_seen = False
        self.p_open_last = False
        self.p_set = _NOT_SET.copy()
        self.p_value: dict[str, Any] = _NO_VALUES.copy()
        self.p_class_at: datetime | None = None
        self.p_class: str | None = None
        self.p_class_fill: str | None = None
        self.p_decided = False

    def apply(self, e: Event) -> None:
        """Fold one event in (the rules in the module docstring)."""
        at = e.occurred_at
        match e:
            case CaseOpened():
                self._open(e)
            case CaseResolved():
                self._touch(at)
                self._status("resolved")
                self.row["resolved_at"] = at
                self.row["actions_taken"] = [a.name for a in e.actions_taken]
                self.row["resolution_count"] += 1
                self._classify(e.category, at)
            case CaseReopened():
                self._touch(at)
                self._status("reopened")
                self.row["resolved_at"] = None
                self.row["reopen_count"] += 1
            case CaseReclassified():
                self._touch(at)
                self.row["reclassified"] = True
                self._classify(e.category, at)
            case CaseUpdated():
                category = e.changes.get("issue_class")
                if isinstance(category, str):
                    self._touch(at)
                    self._classify(category, at)
                for column, value in e.changes.items():
                    if column in self.p_set:
                        self._set(column, None if value is None else str(value))
            case RecommendationProduced():
                self._touch(at)
                self.row["latest_recommendation_id"] = e.recommendation_id
            case GuardrailDecided():
                self._touch(at)
                self.row["workflow"], self.row["phase"] = e.workflow, e.phase
                self.p_decided = True
        if isinstance(e, FIRST_ACTIONS):
            self._touch(at)
            first = self.row["first_action_at"]
            self.row["first_action_at"] = at if first is None else min(first, at)

    def _touch(self, at: datetime) -> None:
        # Every event but a column update upserts, so the row exists from here on.
        self.exists = True
        latest = self.row["updated_at"]
        self.row["updated_at"] = at if latest is None else max(latest, at)

    def _open(self, e: CaseOpened) -> None:
        row, at = self.row, e.occurred_at
        self._touch(at)
        if row["opened_at"] is None:
            row["status"] = "open"
        for column in FILLED_BY_OPEN:
            row[column] = _first(row[column], getattr(e, column))
        row["issue_class"] = _first(row["issue_class"], e.issue_class)
        row["issue_class_at"] = _first(row["issue_class_at"], at)
        row["opened_at"] = _first(row["opened_at"], at)
        if not self.p_open_seen:
            self.p_open_seen = self.p_open_last = True
        for column in UPDATABLE:
            self.p_value[column] = _first(self.p_value[column], getattr(e, column))
        self.p_class_fill = _first(self.p_class_fill, e.issue_class)
        if self.p_class_at is not None:
            self.p_class = _first(self.p_class, e.issue_class)

    def _status(self, status: str) -> None:
        self.row["status"] = self.p_status = status
        self.p_open_last = False

    def _classify(self, category: str, at: datetime) -> None:
        row = self.row
        if row["issue_class_at"] is None or at >= row["issue_class_at"]:
            row["issue_class"], row["issue_class_at"] = category, at
        if self.p_class_at is None or at >= self.p_class_at:
            self.p_class, self.p_class_at = category, at

    def _set(self, column: str, value: str | None) -> None:
        if self.exists:
            self.row[column] = value
        self.p_set[column] = True
        self.p_value[column] = value

    def staged(self) -> tuple[Any, ...]:
        """The staging row, in ``STAGE_COLUMNS`` order."""
        return (
            *self.row.values(),
            self.p_status,
            self.p_open_last,
            *self.p_set.values(),
            *self.p_value.values(),
            self.p_class_at,
            self.p_class,
            self.p_class_fill,
            self.p_decided,
        )


def fold(events: Iterable[Event]) -> dict[str, CaseDelta]:
    """Each case's events folded into one delta, in the order given."""
    deltas: dict[str, CaseDelta] = {}
    for e in events:
        delta = deltas.get(e.case_id)
        if delta is None:
            delta = deltas[e.case_id] = CaseDelta(e.case_id)
        delta.apply(e)
    # A case whose events touch nothing here (a review submitted, a dead letter) has
    # no row to write.
    return {case_id: d for case_id, d in deltas.items() if d.exists}


class CaseStateProjection:
    name: str = "case_state"

    def __init__(self) -> None:
        self.stage = Stage("case_state_stage", "case_state", CONTROL, key=("case_id",))

    def prepare(self, cur: psycopg.Cursor) -> None:
        self.stage.create(cur)

    @staticmethod
    def plan(batch: Sequence[Envelope]) -> list[tuple[Any, ...]]:
        """One staging row per case the batch touches."""
        return [d.staged() for d in fold(env.event for env in batch).values()]

    def apply(self, load: Load, plan: list[tuple[Any, ...]]) -> None:
        load.merge(self.stage, STAGE_COLUMNS, plan, MERGE_ROWS)
