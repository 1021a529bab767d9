"""``case_state``: one row per case with its status, segment and milestones (DESIGN §4).

Events from other topics can reach the projection before the case's ``CaseOpened`` (topics
are consumed side by side), so every statement is an upsert: a case first seen through a
later event gets a ``pending`` row that its ``CaseOpened`` completes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg
from psycopg import sql

from projections.envelope import Envelope
from projections.statements import Step, run_in_order
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

# Every statement is an upsert keyed by case_id; updated_at keeps the latest event time.
OPEN = """
INSERT INTO case_state AS s (case_id, status, updated_at, source, channel, queue, team,
    issue_class, issue_class_at, subject, priority, opened_at)
VALUES (%(case_id)s, 'open', %(at)s, %(source)s, %(channel)s, %(queue)s, %(team)s,
    %(issue_class)s, %(at)s, %(subject)s, %(priority)s, %(at)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    -- A second CaseOpened for the same case (an upstream error) changes nothing it filled.
    status = CASE WHEN s.opened_at IS NULL THEN 'open' ELSE s.status END,
    source = coalesce(s.source, EXCLUDED.source), channel = coalesce(s.channel, EXCLUDED.channel),
    queue = coalesce(s.queue, EXCLUDED.queue), team = coalesce(s.team, EXCLUDED.team),
    issue_class = coalesce(s.issue_class, EXCLUDED.issue_class),
    issue_class_at = coalesce(s.issue_class_at, EXCLUDED.issue_class_at),
    subject = coalesce(s.subject, EXCLUDED.subject),
    priority = coalesce(s.priority, EXCLUDED.priority),
    opened_at = coalesce(s.opened_at, EXCLUDED.opened_at)
"""
FIRST_ACTION = """
INSERT INTO case_state AS s (case_id, status, updated_at, first_action_at)
VALUES (%(case_id)s, 'pending', %(at)s, %(at)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    first_action_at = least(coalesce(s.first_action_at, EXCLUDED.first_action_at),
                            EXCLUDED.first_action_at)
"""
# For the three statements that set issue_class: the latest by event time wins (see
# issue_class_at in migration 001), whatever order the topics are read in.
RESOLVE = """
INSERT INTO case_state AS s (case_id, status, updated_at, resolved_at, issue_class,
    issue_class_at, actions_taken, resolution_count)
VALUES (%(case_id)s, 'resolved', %(at)s, %(at)s, %(category)s, %(at)s, %(actions)s, 1)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    status = 'resolved', resolved_at = EXCLUDED.resolved_at,
    actions_taken = EXCLUDED.actions_taken, resolution_count = s.resolution_count + 1,
    issue_class = CASE WHEN s.issue_class_at IS NULL OR EXCLUDED.issue_class_at >=
        s.issue_class_at THEN EXCLUDED.issue_class ELSE s.issue_class END,
    issue_class_at = greatest(s.issue_class_at, EXCLUDED.issue_class_at)
"""
CLASSIFY = """
INSERT INTO case_state AS s (case_id, status, updated_at, issue_class, issue_class_at)
VALUES (%(case_id)s, 'pending', %(at)s, %(category)s, %(at)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    issue_class = CASE WHEN s.issue_class_at IS NULL OR EXCLUDED.issue_class_at >=
        s.issue_class_at THEN EXCLUDED.issue_class ELSE s.issue_class END,
    issue_class_at = greatest(s.issue_class_at, EXCLUDED.issue_class_at)
"""
RECLASSIFY = """
INSERT INTO case_state AS s (case_id, status, updated_at, issue_class, issue_class_at,
    reclassified)
VALUES (%(case_id)s, 'pending', %(at)s, %(category)s, %(at)s, true)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    reclassified = true,
    issue_class = CASE WHEN s.issue_class_at IS NULL OR EXCLUDED.issue_class_at >=
        s.issue_class_at THEN EXCLUDED.issue_class ELSE s.issue_class END,
    issue_class_at = greatest(s.issue_class_at, EXCLUDED.issue_class_at)
"""
REOPEN = """
INSERT INTO case_state AS s (case_id, status, updated_at, reopen_count)
VALUES (%(case_id)s, 'reopened', %(at)s, 1)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    status = 'reopened', resolved_at = NULL, reopen_count = s.reopen_count + 1
"""
RECOMMENDED = """
INSERT INTO case_state AS s (case_id, status, updated_at, latest_recommendation_id)
VALUES (%(case_id)s, 'pending', %(at)s, %(recommendation_id)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    latest_recommendation_id = EXCLUDED.latest_recommendation_id
"""
DECIDED = """
INSERT INTO case_state AS s (case_id, status, updated_at, workflow, phase)
VALUES (%(case_id)s, 'pending', %(at)s, %(workflow)s, %(phase)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    workflow = EXCLUDED.workflow, phase = EXCLUDED.phase
"""
UPDATE_COLUMN = {
    column: sql.SQL("UPDATE case_state SET {} = %(value)s WHERE case_id = %(case_id)s").format(
        sql.Identifier(column)
    )
    for column in UPDATABLE
}


class CaseStateProjection:
    name: str = "case_state"

    def apply(self, cur: psycopg.Cursor, batch: Sequence[Envelope]) -> None:
        run_in_order(cur, (step for env in batch for step in self.steps(env.event)))

    @staticmethod
    def steps(e: Event) -> Iterator[Step]:
        """The statements one event asks for, in order."""
        # A case first seen through a later event is 'pending' until its CaseOpened.
        base = {"case_id": e.case_id, "at": e.occurred_at}
        match e:
            case CaseOpened():
                yield (
                    OPEN,
                    base
                    | {
                        "source": e.source,
                        "channel": e.channel,
                        "queue": e.queue,
                        "team": e.team,
                        "issue_class": e.issue_class,
                        "subject": e.subject,
                        "priority": e.priority,
                    },
                )
            case CaseResolved():
                yield (
                    RESOLVE,
                    base | {"category": e.category, "actions": [a.name for a in e.actions_taken]},
                )
            case CaseReopened():
                yield (REOPEN, base)
            case CaseReclassified():
                yield (RECLASSIFY, base | {"category": e.category})
            case CaseUpdated():
                if isinstance(e.changes.get("issue_class"), str):
                    yield (CLASSIFY, base | {"category": e.changes["issue_class"]})
                for column, value in e.changes.items():
                    if column in UPDATE_COLUMN:
                        yield (
                            UPDATE_COLUMN[column],
                            {"case_id": e.case_id, "value": None if value is None else str(value)},
                        )
            case RecommendationProduced():
                yield (RECOMMENDED, base | {"recommendation_id": e.recommendation_id})
            case GuardrailDecided():
                yield (DECIDED, base | {"workflow": e.workflow, "phase": e.phase})
        if isinstance(e, FIRST_ACTIONS):
            yield (FIRST_ACTION, base)
