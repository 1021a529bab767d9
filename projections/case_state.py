"""``case_state``: one row per case with its current status and segment (DESIGN section 4).

Upstream case events shape the row here; the recommendation, decision and execution columns
(workflow, phase, first action, latest recommendation) are filled by the events that carry them.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from projections.envelope import Envelope
from schemas.events import CaseOpened, CaseReopened, CaseResolved, CaseUpdated

# CaseUpdated.changes keys that map onto case_state columns.
UPDATABLE = ("channel", "queue", "team", "issue_class", "subject", "priority")

OPEN = """
INSERT INTO case_state (case_id, status, source, channel, queue, team, issue_class, subject,
                        priority, opened_at, last_event_id)
VALUES (%s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (case_id) DO NOTHING
"""
RESOLVE = """
UPDATE case_state SET status = 'resolved', resolved_at = %s, issue_class = %s,
       last_event_id = %s, updated_at = now()
WHERE case_id = %s AND last_event_id <> %s
"""
REOPEN = """
UPDATE case_state SET status = 'reopened', resolved_at = NULL,
       reopen_count = reopen_count + 1, last_event_id = %s, updated_at = now()
WHERE case_id = %s AND last_event_id <> %s
"""
# One statement per updatable column keeps the SQL static (no string-built column names).
UPDATE_COLUMN = {
    column: sql.SQL(
        "UPDATE case_state SET {} = %s, last_event_id = %s, updated_at = now() WHERE case_id = %s"
    ).format(sql.Identifier(column))
    for column in UPDATABLE
}


class CaseStateProjection:
    name: str = "case_state"
    topics: tuple[str, ...] = ("cases",)

    def apply(self, cur: psycopg.Cursor, batch: Sequence[Envelope]) -> None:
        # Statements run in event order (a case opened and resolved in one batch must end
        # resolved); the pipeline sends them without a round trip each.
        with cur.connection.pipeline():
            for env in batch:
                self._apply_one(cur, env)

    @staticmethod
    def _apply_one(cur: psycopg.Cursor, env: Envelope) -> None:
        e = env.event
        if isinstance(e, CaseOpened):
            cur.execute(
                OPEN,
                (
                    e.case_id,
                    e.source,
                    e.channel,
                    e.queue,
                    e.team,
                    e.issue_class,
                    e.subject,
                    e.priority,
                    e.occurred_at,
                    e.event_id,
                ),
            )
        elif isinstance(e, CaseResolved):
            cur.execute(RESOLVE, (e.occurred_at, e.category, e.event_id, e.case_id, e.event_id))
        elif isinstance(e, CaseReopened):
            cur.execute(REOPEN, (e.event_id, e.case_id, e.event_id))
        elif isinstance(e, CaseUpdated):
            for column, value in e.changes.items():
                if column in UPDATE_COLUMN:
                    cur.execute(
                        UPDATE_COLUMN[column],
                        (None if value is None else str(value), e.event_id, e.case_id),
                    )
