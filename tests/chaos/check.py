"""After a chaos run: what every case should have, checked against the topics and the tables.

The expectation is built stage by stage from the causes on the topics (each CaseOpened
wants one recommendation, each recommendation one decision, each review one record, each
approval-required item one completion, each authorization one execution request, each
request one outcome, each event one audit row…). For every stage: how many causes, how
many lack their effect (lost), and how many have more than one distinct effect
(duplicated). Records repeated with the same event_id are counted apart as redeliveries:
at-least-once delivery makes them, and every consumer drops them by event_id.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from infra.db import database_urls
from infra.kafka import consumer_config, read_headers
from infra.sandbox import child_env
from infra.settings import PROJECT_ROOT, Settings
from infra.topics import INTAKE, TOPICS
from projections.replay import differences, rebuild
from schemas.codec import Codec, CodecError
from schemas.events import (
    ApprovalCompleted,
    ApprovalExpired,
    CaseOpened,
    DeadLettered,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    GuardrailDecided,
    ModelOutputRejected,
    PolicyPublished,
    RecommendationProduced,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
)
from tests.downstream import Downstream


@dataclass(frozen=True)
class Record:
    topic: str  # logical name (cases, decisions…)
    partition: int
    offset: int
    value: bytes
    event: Event | None  # None: undecodable


@dataclass
class Stage:
    """One expectation: each cause has exactly one distinct effect."""

    name: str
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    examples: list[str] = field(default_factory=list)  # a few ids at fault, for the log

    def judge(self, causes: Iterable[str], effects: dict[str, set[str]]) -> Stage:
        """`effects`: cause -> the distinct ids of what it produced."""
        wanted = set(causes)
        self.expected = len(wanted)
        lost = sorted(c for c in wanted if not effects.get(c))
        extra = sorted(c for c, ids in effects.items() if len(ids) > 1 or c not in wanted)
        self.lost, self.duplicated = len(lost), len(extra)
        self.examples = (lost + extra)[:5]
        return self


def read_topics(settings: Settings, codec: Codec, timeout_s: float = 300.0) -> list[Record]:
    """Every record of every casegate event topic, up to the ends as they are now."""
    consumer = Consumer(
        consumer_config(settings, f"chaos-check-{uuid.uuid4()}", **{"enable.partition.eof": False})
    )
    logical = {settings.topic(t.name): t.name for t in TOPICS if t.events}
    try:
        meta = consumer.list_topics(timeout=30).topics
        ends: dict[tuple[str, int], int] = {}
        for name in logical:
            for p in meta[name].partitions:
                ends[(name, p)] = consumer.get_watermark_offsets(
                    TopicPartition(name, p), timeout=30
                )[1]
        consumer.assign([TopicPartition(n, p, OFFSET_BEGINNING) for (n, p) in ends])
        records: list[Record] = []
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = _deadline(timeout_s)
        while remaining:
            if deadline():
                raise TimeoutError(f"topics not read to the end: {sorted(remaining)[:3]}…")
            for msg in consumer.consume(5000, 1.0):
                if msg.error() is not None:
                    continue
                name, p, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
                value = msg.value() or b""
                try:
                    event: Event | None = codec.decode(value, read_headers(msg))
                except CodecError:
                    event = None
                records.append(Record(logical[name], p, offset, value, event))
            # position() also moves past transaction markers, which no record reports.
            positions = consumer.position([TopicPartition(n, p) for (n, p) in remaining])
            remaining = {
                (tp.topic, tp.partition)
                for tp in positions
                if tp.offset < ends[(tp.topic, tp.partition)]
            }
        return records
    finally:
        consumer.close()


def _deadline(seconds: float) -> Callable[[], bool]:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() > end


E = TypeVar("E", bound=Event)


def _only(records: list[Record], kind: type[E]) -> list[E]:
    return [r.event for r in records if isinstance(r.event, kind)]


def _group(
    events: Iterable[E], cause: Callable[[E], str | None], effect: Callable[[E], str] | None = None
) -> dict[str, set[str]]:
    """cause -> the distinct ids (event ids unless `effect` says otherwise) it produced."""
    out: dict[str, set[str]] = defaultdict(set)
    for e in events:
        key = cause(e)
        if key is not None:
            out[key].add(effect(e) if effect else e.event_id)
    return out


def _merge(*groups: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        for key, ids in group.items():
            out[key] |= ids
    return out


@dataclass
class Verdict:
    stages: list[Stage]
    records: int
    redelivered: dict[str, int]  # topic -> repeated records (same event_id)
    dead_lettered: int
    undecodable: int
    review_denials: int
    wrong_outcomes: int
    actor_mismatches: int
    downstream: dict[str, int]
    audit_verify: tuple[bool, str]
    replay: dict[str, int]

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.stages)

    @property
    def duplicated(self) -> int:
        return sum(s.duplicated for s in self.stages)

    def problems(self) -> list[str]:
        out = [
            f"{s.name}: {s.lost} lost, {s.duplicated} duplicated (e.g. {s.examples})"
            for s in self.stages
            if s.lost or s.duplicated
        ]
        for label, n in (
            ("dead letters", self.dead_lettered),
            ("undecodable records", self.undecodable),
            ("reviews denied", self.review_denials),
            ("approvals with another outcome than the operators gave", self.wrong_outcomes),
            ("audit rows whose actor differs from the event's", self.actor_mismatches),
            ("downstream keys reused with another body", self.downstream["conflicting_keys"]),
        ):
            if n:
                out.append(f"{n} {label}")
        if not self.audit_verify[0]:
            out.append(f"casegate audit verify failed: {self.audit_verify[1]}")
        if any(self.replay.values()):
            out.append(f"replay differs from the live read models: {self.replay}")
        return out


def check(
    settings: Settings,
    codec: Codec,
    downstream: Downstream,
    planned: dict[str, str],
    replay: bool = True,
) -> Verdict:
    """`planned`: recommendation_id -> the outcome the operators gave (approved/rejected)."""
    everything = read_topics(settings, codec)
    # What upstream sent, and what intake accepted of it (re-published on `cases`): the
    # rest of the checks start from `cases`, as every component does.
    upstream = {r.event.event_id for r in everything if r.topic == INTAKE and r.event}
    records = [r for r in everything if r.topic != INTAKE]
    accepted = {r.event.event_id for r in records if r.topic == "cases" and r.event}
    events = [r.event for r in records if r.event is not None]

    opened = _only(records, CaseOpened)
    recs = _only(records, RecommendationProduced)
    decisions = _only(records, GuardrailDecided)
    reviews = _only(records, ReviewSubmitted)
    completions = _only(records, ApprovalCompleted)
    requests = _only(records, ExecutionRequested)

    by_rec = {d.recommendation_id: d for d in decisions}
    needs_review = {d.recommendation_id for d in decisions if d.outcome == "approval_required"}
    authorized = {
        d.recommendation_id
        for d in decisions
        if d.outcome == "auto_authorized" and d.action is not None
    }
    # An approved suggest-only item is done by hand: casegate requests no execution.
    authorized |= {
        c.recommendation_id
        for c in completions
        if c.outcome == "approved" and "suggest_only" not in by_rec[c.recommendation_id].reasons
    }
    execution_ids = {r.execution_id for r in requests}

    def caused(
        e: RecommendationProduced | ModelOutputRejected | ReviewRecorded | ReviewDenied,
    ) -> str | None:
        return e.causation_id

    def of_rec(
        e: GuardrailDecided | ApprovalCompleted | ApprovalExpired | ExecutionRequested,
    ) -> str:
        return e.recommendation_id

    def of_execution(e: ExecutionRequested | ExecutionSucceeded | ExecutionFailed) -> str:
        return e.execution_id

    stages = [
        Stage("intake accepted").judge(upstream, {i: {i} for i in accepted}),
        Stage("recommendations").judge(
            {e.event_id for e in opened},
            _merge(_group(recs, caused), _group(_only(records, ModelOutputRejected), caused)),
        ),
        Stage("guard decisions").judge(
            {r.recommendation_id for r in recs}, _group(decisions, of_rec)
        ),
        Stage("reviews recorded").judge(
            {e.event_id for e in reviews},
            _merge(
                _group(_only(records, ReviewRecorded), caused),
                _group(_only(records, ReviewDenied), caused),
            ),
        ),
        Stage("approvals completed").judge(
            needs_review,
            _merge(_group(completions, of_rec), _group(_only(records, ApprovalExpired), of_rec)),
        ),
        Stage("executions requested").judge(authorized, _group(requests, of_rec, of_execution)),
        Stage("execution outcomes").judge(
            execution_ids,
            _merge(
                _group(_only(records, ExecutionSucceeded), of_execution),
                _group(_only(records, ExecutionFailed), of_execution),
            ),
        ),
    ]
    calls = downstream.calls_per_key()
    stages.append(
        Stage("downstream actions").judge(execution_ids, {str(k): {str(k)} for k in calls})
    )

    ids_on_topics = {e.event_id for e in events}
    with psycopg.connect(database_urls(settings).app) as conn:
        audit = _column(conn, "SELECT event_id FROM audit_log")
        stages.append(_table_stage("audit_log rows", ids_on_topics, audit))
        not_case = {e.event_id for e in events if isinstance(e, PolicyPublished | DeadLettered)}
        stages.append(
            _table_stage(
                "case_timeline rows",
                ids_on_topics - not_case,
                _column(conn, "SELECT event_id FROM case_timeline"),
            )
        )
        stages.append(
            _table_stage(
                "case_state rows",
                {e.case_id for e in opened},
                _column(conn, "SELECT case_id FROM case_state"),
            )
        )
        stages.append(
            _table_stage(
                "recommendation_facts rows",
                {r.recommendation_id for r in recs},
                _column(conn, "SELECT recommendation_id FROM recommendation_facts"),
            )
        )
        stages.append(
            _table_stage(
                "executions rows",
                execution_ids,
                _column(conn, "SELECT execution_id FROM executions"),
            )
        )
        actor_mismatches = sum(
            1
            for event_id, actor in conn.execute(
                "SELECT event_id, actor FROM audit_log WHERE event_type = 'ReviewSubmitted'"
            ).fetchall()
            if actor != _actors(reviews).get(event_id)
        )

    outcomes = {c.recommendation_id: c.outcome for c in completions}
    wrong = sum(
        1
        for rec_id, outcome in planned.items()
        if rec_id in outcomes and outcomes[rec_id] != outcome
    )
    redelivered: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    for r in records:
        if r.event is not None:
            if r.event.event_id in seen:
                redelivered[r.topic] += 1
            seen.add(r.event.event_id)
    rolled_back = len(_only(records, ExecutionRolledBack))
    return Verdict(
        stages=stages,
        records=len(records),
        redelivered=dict(redelivered),
        dead_lettered=len({e.event_id for e in _only(records, DeadLettered)}),
        undecodable=sum(1 for r in records if r.event is None),
        review_denials=len(_only(records, ReviewDenied)),
        wrong_outcomes=wrong,
        actor_mismatches=actor_mismatches,
        downstream={
            "calls": sum(calls.values()),
            "keys": len(calls),
            "performed": downstream.performed,
            "repeats_answered_from_store": downstream.repeats,
            "conflicting_keys": len(downstream.conflicts),
            "failed_executions": len(_only(records, ExecutionFailed)),
            "rolled_back": rolled_back,
        },
        audit_verify=audit_verify(settings),
        replay=replay_differences(settings, codec) if replay else {},
    )


def _actors(reviews: list[ReviewSubmitted]) -> dict[str, str]:
    return {e.event_id: e.actor for e in reviews}


def _column(conn: psycopg.Connection, query: str) -> list[str]:
    return [str(row[0]) for row in conn.execute(query).fetchall()]


def _table_stage(name: str, expected: set[str], rows: list[str]) -> Stage:
    """A table keyed by the ids in `expected`: one row each, no other rows."""
    effects: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for key in rows:
        counts[key] += 1
        effects[key].add(f"{key}#{counts[key]}")  # a second row is a second effect
    return Stage(name).judge(expected, effects)


def run_audit_verify(
    settings: Settings, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """`casegate audit verify`, run as an operator would: its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "audit", "verify"],
        env=child_env(settings),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def audit_verify(settings: Settings) -> tuple[bool, str]:
    """Whether `casegate audit verify` passed, and its last line."""
    done = run_audit_verify(settings)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else f"exit {done.returncode}"


def replay_differences(settings: Settings, codec: Codec) -> dict[str, int]:
    """Rebuild every read model from the topics into a fresh schema; rows that differ."""
    rebuild(settings, codec, schema="rebuild")
    with psycopg.connect(database_urls(settings).app) as conn:
        return differences(conn, "public", "rebuild")
