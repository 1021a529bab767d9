"""Policy dry-run I/O: read the recorded recommendations of a window, decide them again
under a candidate (`processors.dryrun`), and keep the report that was shown.

Why the topic and not the read models: the guard decided each recommendation from the
event itself (its routing fields, parameters and case-bound facts) at the record's Kafka
timestamp, and counted the blast radius per partition; only the `recommendations` topic
holds all of that as it was. The read models supply the other side: the decision that was
recorded for each recommendation (`recommendation_facts`), looked up a batch at a time.
Nothing is produced anywhere; the only write is the report, into `policy_dry_runs`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from infra.kafka import consumer_config
from infra.settings import Settings
from policy.loader import LoadedPolicy
from processors.dryrun import DryRunReport, HistoryRecord, Recorded, build_report, redecide
from schemas.codec import Codec
from schemas.codec_errors import CodecError
from schemas.events import RecommendationProduced

LOOKUP_BATCH = 2000
_DURATION = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(text: str, now: datetime) -> datetime:
    """`30d`, `12h`, `90m` before `now`, or an ISO date/time (UTC unless it says)."""
    match = _DURATION.match(text.strip())
    if match:
        n, unit = int(match[1]), match[2]
        return now - timedelta(**{_UNITS[unit]: n})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration (30d, 12h, 90m) or an ISO date (2026-11-01)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class HistoryReader:
    """The recommendations topic from a moment to its end as of opening, partition by
    partition in offset order, with a throwaway group that commits nothing."""

    def __init__(self, settings: Settings, codec: Codec, start: datetime) -> None:
        self.codec = codec
        self.topic = settings.topic("recommendations")
        self.consumer = Consumer(
            consumer_config(settings, f"{settings.topic_prefix}dry-run-{uuid.uuid4()}")
        )
        meta = self.consumer.list_topics(self.topic, timeout=15)
        if meta.topics[self.topic].error is not None:
            raise KafkaException(meta.topics[self.topic].error)
        self.partitions = sorted(meta.topics[self.topic].partitions)
        wanted = [
            TopicPartition(self.topic, p, int(start.timestamp() * 1000)) for p in self.partitions
        ]
        found = self.consumer.offsets_for_times(wanted, timeout=15)
        self.ends: dict[int, int] = {}
        self.starts: dict[int, int] = {}
        for tp in found:
            _low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, tp.partition), timeout=15
            )
            # -1: no record at or after `start` in this partition.
            self.starts[tp.partition] = high if tp.offset < 0 else tp.offset
            self.ends[tp.partition] = high
        self.total = sum(self.ends[p] - self.starts[p] for p in self.partitions)

    def records(
        self, advance: Callable[[int], None], timeout_s: float = 60.0
    ) -> Iterator[HistoryRecord]:
        pending = {p for p in self.partitions if self.starts[p] < self.ends[p]}
        if not pending:
            return
        self.consumer.assign([TopicPartition(self.topic, p, self.starts[p]) for p in pending])
        idle_since = time.monotonic()
        while pending:
            messages = self.consumer.consume(500, timeout=1.0)
            for msg in messages:
                partition, offset = msg.partition(), msg.offset()
                if msg.error() is not None or partition is None or offset is None:
                    continue
                if offset >= self.ends.get(partition, 0):
                    continue
                try:
                    event = self.codec.decode(msg.value(), msg.headers())
                except CodecError:
                    continue  # dead-lettered by the guard when it read it; decided nothing
                if isinstance(event, RecommendationProduced):
                    yield HistoryRecord(event, partition, msg.timestamp()[1] / 1000)
            advance(len(messages))
            # By position, not by the last offset seen: transaction markers take offsets
            # a read-committed consumer never receives.
            positions = self.consumer.position([TopicPartition(self.topic, p) for p in pending])
            done = {tp.partition for tp in positions if tp.offset >= self.ends[tp.partition]}
            pending -= done
            if messages or done:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > timeout_s:
                raise KafkaException(
                    f"{self.topic}: partitions {sorted(pending)} not read to their end "
                    f"within {timeout_s:g}s"
                )

    def close(self) -> None:
        self.consumer.close()


def recorded_decisions(conn: psycopg.Connection, rec_ids: list[str]) -> dict[str, Recorded]:
    """The guard's recorded decision for each of these recommendations (when there is one)."""
    rows = conn.execute(
        "SELECT recommendation_id, outcome, policy_version, workflow FROM recommendation_facts "
        "WHERE recommendation_id = ANY(%s) AND outcome IS NOT NULL",
        (rec_ids,),
    ).fetchall()
    return {r[0]: Recorded(r[1], r[2], r[3]) for r in rows}


def run_dry_run(
    settings: Settings,
    codec: Codec,
    conn: psycopg.Connection,
    candidate: LoadedPolicy,
    since: datetime,
    on_total: Callable[[int], None] = lambda _n: None,
    advance: Callable[[int], None] = lambda _n: None,
) -> DryRunReport:
    """Decide every recommendation recorded since `since` under `candidate` and compare.

    Reading starts one blast-radius window earlier (the longest of the candidate's), so
    the automatic runs that counted at `since` count again; those earlier records are
    decided but not reported.
    """
    warmup = max(
        (wf.blast_radius.window_s for wf in candidate.policy.workflows.values() if wf.blast_radius),
        default=0,
    )
    reader = HistoryReader(settings, codec, since - timedelta(seconds=warmup))
    now = datetime.now(UTC)
    report = DryRunReport(candidate.version, candidate.sha256, since, now)
    try:
        on_total(reader.total)
        since_s = since.timestamp()
        decided = (
            d
            for d in redecide(reader.records(advance), candidate, len(reader.partitions))
            if d.record.timestamp_s >= since_s
        )
        while chunk := list(islice(decided, LOOKUP_BATCH)):
            recorded = recorded_decisions(conn, [d.record.rec.recommendation_id for d in chunk])
            build_report(chunk, recorded, report)
    finally:
        reader.close()
    return report


def record_dry_run(
    conn: psycopg.Connection,
    report: DryRunReport,
    document: str,
    ran_by: str,
    baseline: str | None,
) -> str:
    """Keep the report that was shown; its id is what a publish cites."""
    dry_run_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO policy_dry_runs (dry_run_id, candidate_sha256, candidate_version, "
        "document, baseline_version, window_start, window_end, ran_by, decisions, changed, "
        "report) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            dry_run_id,
            report.candidate_sha256,
            report.candidate_version,
            document,
            baseline,
            report.window_start,
            report.window_end,
            ran_by,
            report.decisions,
            report.changed,
            orjson.dumps(report.to_json()).decode(),
        ),
    )
    return dry_run_id


def dry_run_of(conn: psycopg.Connection, sha256: str, baseline: str | None) -> str | None:
    """The latest dry-run of the candidate with this sha256 made while `baseline` was in
    force, or None: a report made against another policy no longer says what changes."""
    row = conn.execute(
        "SELECT dry_run_id FROM policy_dry_runs WHERE candidate_sha256 = %s "
        "AND baseline_version IS NOT DISTINCT FROM %s ORDER BY ran_at DESC LIMIT 1",
        (sha256, baseline),
    ).fetchone()
    return None if row is None else str(row[0])
