"""Running a projection's statements in event order, batched where order allows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby
from typing import Any

import psycopg
from psycopg import sql

Statement = str | sql.Composed
Step = tuple[Statement, Mapping[str, Any] | Sequence[Any]]


def run_in_order(cur: psycopg.Cursor, steps: Iterable[Step]) -> None:
    """Execute ``steps`` in order; consecutive runs of one statement go as one executemany.

    Order matters (a case opened then resolved in the same batch must end resolved), so
    only neighbours are merged; executemany then pipelines the run in few round trips.
    """
    for statement, run in groupby(steps, key=lambda step: step[0]):
        cur.executemany(statement, [params for _, params in run])
