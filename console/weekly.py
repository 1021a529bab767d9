"""The weekly review: what moved, what was refused or failed, and where humans corrected.

Three parts, each from the read models over one week against the week before:

- **movers**: the workflows and segments (issue class, queue, team, channel) whose rates
  moved most — acceptance, override, denial, error and re-open rate, each re-aggregated
  from the counts in `metrics`, and only where both weeks hold `min_sample` or more;
- **refusals**: guard denials grouped by workflow, action and reason code; failed, timed
  out and rolled back executions grouped by action and error class;
- **escalations**: re-opens, reclassifications (to which class) and overrides (from which
  action to which), by workflow and queue.

`weekly_report` queries; `render_markdown` is pure, so the console page and the CLI print
the same text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg import sql

SEGMENTS = ("workflow", "issue_class", "queue", "team", "channel")
# rate name -> (numerator, denominator) columns of `metrics`
RATES: dict[str, tuple[str, str]] = {
    "acceptance rate": ("accepted", "reviewed"),
    "override rate": ("overridden", "reviewed"),
    "denial rate": ("denied", "decided"),
    "error rate": ("executions_failed", "executions"),
    "re-open rate": ("cases_reopened", "cases_resolved"),
}
COUNTS = sorted({c for pair in RATES.values() for c in pair})
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class Move:
    segment: str  # e.g. "queue"
    value: str
    metric: str
    before: float
    after: float
    before_n: int
    after_n: int

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass
class WeeklyReport:
    week_start: date
    week_end: date  # exclusive
    movers: list[Move] = field(default_factory=list)
    denials: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    reopens: list[dict[str, Any]] = field(default_factory=list)
    reclassifications: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)


def movers(
    weeks: dict[tuple[str, str, bool], dict[str, int]], min_sample: int, top: int
) -> list[Move]:
    """The `top` largest rate changes from last week (False) to this week (True), per
    (segment, value), where both weeks hold at least `min_sample` in the denominator."""
    found = []
    for (segment, value, this_week), counts in weeks.items():
        if not this_week:
            continue
        before = weeks.get((segment, value, False))
        if before is None:
            continue
        for metric, (num, den) in RATES.items():
            if counts[den] < min_sample or before[den] < min_sample:
                continue
            found.append(
                Move(
                    segment,
                    value,
                    metric,
                    before[num] / before[den],
                    counts[num] / counts[den],
                    before[den],
                    counts[den],
                )
            )
    found.sort(key=lambda m: (-abs(m.delta), m.segment, m.value, m.metric))
    return found[:top]


def weekly_report(
    conn: psycopg.Connection, week_end: date, min_sample: int = 5, top: int = 10
) -> WeeklyReport:
    """The review of the week ending (exclusive) on `week_end`."""
    start, prev = week_end - timedelta(days=7), week_end - timedelta(days=14)
    report = WeeklyReport(start, week_end)
    weeks: dict[tuple[str, str, bool], dict[str, int]] = {}
    for segment in SEGMENTS:
        query = sql.SQL(
            "SELECT {seg}, day >= %(start)s, {sums} FROM metrics "
            "WHERE day >= %(prev)s AND day < %(end)s AND {seg} IS NOT NULL GROUP BY 1, 2"
        ).format(
            seg=sql.Identifier(segment),
            sums=sql.SQL(", ").join(
                sql.SQL("coalesce(sum({}), 0)::bigint").format(sql.Identifier(c)) for c in COUNTS
            ),
        )
        for value, this_week, *sums in conn.execute(
            query, {"start": start, "prev": prev, "end": week_end}
        ):
            weeks[(segment, value, this_week)] = dict(zip(COUNTS, sums, strict=True))
    report.movers = movers(weeks, min_sample, top)
    window = {"start": start, "end": week_end, "n": EXAMPLES}
    report.denials = _rows(conn, DENIALS, window)
    report.failures = _rows(conn, FAILURES, window)
    report.reopens = _rows(conn, TIMELINE_BY_SEGMENT, {**window, "type": "CaseReopened"})
    report.reclassifications = _rows(conn, RECLASSIFICATIONS, window)
    report.overrides = _rows(conn, OVERRIDES, window)
    return report


def _rows(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = conn.execute(query, params)
    names = [c.name for c in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur]


DENIALS = """
SELECT coalesce(r.workflow, '-') AS workflow, coalesce(r.action_name, '-') AS action,
       reason, count(*)::bigint AS count,
       (array_agg(DISTINCT r.case_id ORDER BY r.case_id))[1:%(n)s] AS examples
FROM recommendation_facts r CROSS JOIN LATERAL unnest(r.reasons) AS reason
WHERE r.outcome = 'denied' AND r.produced_at >= %(start)s AND r.produced_at < %(end)s
GROUP BY 1, 2, 3 ORDER BY count DESC, 1, 2, 3
"""
FAILURES = """
SELECT coalesce(e.action_name, '-') AS action,
       CASE WHEN e.rolled_back THEN 'rolled back'
            WHEN e.timed_out THEN 'timed out'
            ELSE coalesce(e.error_class, e.status) END AS reason,
       count(*)::bigint AS count,
       (array_agg(DISTINCT e.case_id ORDER BY e.case_id))[1:%(n)s] AS examples
FROM executions e
WHERE e.status IN ('failed', 'rolled_back')
  AND e.requested_at >= %(start)s AND e.requested_at < %(end)s
GROUP BY 1, 2 ORDER BY count DESC, 1, 2
"""
TIMELINE_BY_SEGMENT = """
SELECT coalesce(c.workflow, '-') AS workflow, coalesce(c.queue, '-') AS queue,
       count(*)::bigint AS count,
       (array_agg(DISTINCT t.case_id ORDER BY t.case_id))[1:%(n)s] AS examples
FROM case_timeline t JOIN case_state c ON c.case_id = t.case_id
WHERE t.event_type = %(type)s AND t.occurred_at >= %(start)s AND t.occurred_at < %(end)s
GROUP BY 1, 2 ORDER BY count DESC, 1, 2
"""
RECLASSIFICATIONS = """
SELECT coalesce(c.workflow, '-') AS workflow, coalesce(c.queue, '-') AS queue,
       coalesce(t.detail ->> 'category', '-') AS category,
       count(*)::bigint AS count,
       (array_agg(DISTINCT t.case_id ORDER BY t.case_id))[1:%(n)s] AS examples
FROM case_timeline t JOIN case_state c ON c.case_id = t.case_id
WHERE t.event_type = 'CaseReclassified'
  AND t.occurred_at >= %(start)s AND t.occurred_at < %(end)s
GROUP BY 1, 2, 3 ORDER BY count DESC, 1, 2, 3
"""
OVERRIDES = """
SELECT coalesce(r.workflow, '-') AS workflow, coalesce(c.queue, '-') AS queue,
       coalesce(r.action_name, '-') AS recommended, coalesce(r.final_action_name, '-') AS chosen,
       count(*)::bigint AS count,
       (array_agg(DISTINCT r.case_id ORDER BY r.case_id))[1:%(n)s] AS examples
FROM recommendation_facts r JOIN case_state c ON c.case_id = r.case_id
WHERE r.verdict = 'overridden' AND r.produced_at >= %(start)s AND r.produced_at < %(end)s
GROUP BY 1, 2, 3, 4 ORDER BY count DESC, 1, 2, 3, 4
"""


def sections(report: WeeklyReport) -> list[tuple[str, list[str], list[list[str]]]]:
    """Each part of the report as (title, column names, rows of text): what the markdown
    and the console page both show."""
    moves = [
        [
            m.segment,
            m.value,
            m.metric,
            f"{m.before:.1%}",
            f"{m.after:.1%}",
            f"{m.delta * 100:+.1f} pts",
            f"{m.before_n} → {m.after_n}",
        ]
        for m in report.movers
    ]
    parts: list[tuple[str, list[str], list[dict[str, Any]]]] = [
        ("Denied actions by reason", ["workflow", "action", "reason"], report.denials),
        ("Failed executions by reason", ["action", "reason"], report.failures),
        ("Re-opened cases", ["workflow", "queue"], report.reopens),
        ("Reclassifications", ["workflow", "queue", "category"], report.reclassifications),
        ("Overrides", ["workflow", "queue", "recommended", "chosen"], report.overrides),
    ]
    return [
        (
            "Largest moves",
            ["segment", "value", "metric", "last week", "this week", "change", "sample"],
            moves,
        ),
        *(
            (
                title,
                [*keys, "count", "example cases"],
                [
                    [*(str(r[k]) for k in keys), str(r["count"]), ", ".join(r["examples"])]
                    for r in rows
                ],
            )
            for title, keys, rows in parts
        ),
    ]


def title_of(report: WeeklyReport) -> tuple[str, str]:
    """The report's heading and the week it is compared with."""
    last_day = report.week_end - timedelta(days=1)
    before = report.week_start - timedelta(days=7)
    return (
        f"Weekly review {report.week_start} to {last_day}",
        f"Compared with the week before ({before} to {report.week_start - timedelta(days=1)}); "
        "a rate counts as moved only where both weeks hold enough cases.",
    )


def render_markdown(report: WeeklyReport) -> str:
    """The report as markdown: a heading per part, a table per list, 'none' when empty."""
    heading, compared = title_of(report)
    lines = [f"# {heading}", "", compared]
    for title, header, rows in sections(report):
        lines += ["", f"## {title}", ""]
        lines += _table(header, rows)
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["none"]
    cells = [[c.replace("|", "\\|") for c in row] for row in rows]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in cells),
    ]
