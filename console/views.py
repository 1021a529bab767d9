"""Read-side queries the CLI shows (parameterised SQL only)."""

from __future__ import annotations

import time

import psycopg

from infra.db import database_urls
from infra.settings import Settings


def wait_for_cases(
    settings: Settings, case_ids: list[str], timeout_s: float
) -> list[tuple[str, ...]]:
    """Poll case_state until every case is there (or the time is up); returns the rows."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT case_id, status, queue, team, channel, subject FROM case_state "
                "WHERE case_id = ANY(%s) ORDER BY case_id",
                (case_ids,),
            ).fetchall()
            if len(rows) == len(case_ids) or time.monotonic() > deadline:
                return [tuple(str(v) for v in r) for r in rows]
            time.sleep(0.25)
