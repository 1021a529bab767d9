"""`casegate replay`: rebuild every read model from the beginning of the topics into a fresh
schema beside the live one, then compare the two table by table."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg import sql

from infra.db import database_urls, migrate
from infra.kafka import common_config
from infra.settings import Settings
from infra.topics import PROJECTED
from projections.runner import group_id
from projections.worker import build_runner
from schemas.codec import Codec

# Tables and views a replay must reproduce exactly.
READ_MODELS = (
    "case_state",
    "audit_log",
    "case_timeline",
    "recommendation_facts",
    "executions",
    "policy_versions",
    "catalog_actions",
    "approval_queue",
    "metrics",
    "shadow_alignment",
    "rollout_events",
    "rollout_proposals",
)


# A replay reads a backlog, so it takes bigger batches than the live worker: fewer
# transactions, and more of a case's events folded into one row change. Two batches are
# in memory at once (one written, the next decoded), ~2.5 kB per event each.
REPLAY_BATCH = 10_000


@dataclass(frozen=True)
class ReplayReport:
    schema: str
    events: int
    dead_letters_skipped: int
    duplicates: int
    seconds: float


def end_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """High watermark of every partition of every casegate topic, right now."""
    admin = AdminClient(common_config(settings))
    meta = admin.list_topics(timeout=30).topics
    from confluent_kafka import Consumer

    # Watermarks only; a group of the read models' own (their principal may use no other).
    probe = Consumer(
        {**common_config(settings), "group.id": group_id(settings, f"probe-{uuid.uuid4()}")}
    )
    try:
        ends = {}
        for spec in PROJECTED:
            name = settings.topic(spec.name)
            for partition in meta[name].partitions:
                _, high = probe.get_watermark_offsets(TopicPartition(name, partition), 30)
                ends[(name, partition)] = high
        return ends
    finally:
        probe.close()


def rebuild(
    settings: Settings,
    codec: Codec,
    schema: str = "rebuild",
    advance: Callable[[int], None] = lambda n: None,
    total: Callable[[int], None] = lambda n: None,
    server_process: Callable[[int], None] = lambda pid: None,
) -> ReplayReport:
    """Drop and recreate ``schema``, then project every event up to the current end.

    The same runner and statements as the live read models, with bigger batches; the
    indexes no statement needs while loading are built once at the end (a sorted build
    instead of one index insertion per row), inside the time reported.
    ``server_process`` is told the PostgreSQL process id of each connection doing the
    work, so that a caller on the database's host can read what it costs there.
    """
    urls = database_urls(settings)
    with psycopg.connect(urls.admin, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    migrate(urls, schema=schema)
    targets = {tp: end for tp, end in end_offsets(settings).items() if end > 0}
    total(sum(targets.values()))
    conn = psycopg.connect(urls.app, options=f"-c search_path={schema}")
    # A replay that fails is made again from the start into a dropped schema, so its
    # commits need not wait for the disk; rows and offsets still commit together.
    conn.execute("SET synchronous_commit = off")
    conn.commit()
    server_process(conn.info.backend_pid)
    runner = build_runner(
        settings,
        codec,
        conn=conn,
        name=f"replay-{uuid.uuid4().hex[:8]}",
        emit_dead_letters=False,
        batch_size=REPLAY_BATCH,
        anchor=False,
    )
    started = time.monotonic()
    with psycopg.connect(urls.admin, autocommit=True) as admin:
        server_process(admin.info.backend_pid)
        deferred = defer_indexes(admin, schema)
        runner.start()
        try:
            while not caught_up(runner.consumer, targets):
                advance(runner.step())
            runner.drain()
        finally:
            runner.close()
            conn.close()
        build_indexes(admin, deferred)
    return ReplayReport(
        schema,
        runner.processed,
        runner.dead_lettered,
        runner.duplicates,
        time.monotonic() - started,
    )


# Indexes in a schema that back no constraint: primary keys and unique constraints stay,
# since the merge statements (ON CONFLICT) and the deduplication (audit_log's unique
# (topic, event_id)) use them while loading.
SECONDARY_INDEXES = """
SELECT i.relname, pg_get_indexdef(x.indexrelid)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %s
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
ORDER BY i.relname
"""
# The one key no statement needs while loading: case_timeline's (an event reaches the
# timeline once, because the audit log admits it once). Adding it back at the end checks
# that too.
LOAD_FREE_KEYS = (("case_timeline", "case_timeline_pkey"),)
KEY_DEFINITION = """
SELECT pg_get_constraintdef(c.oid)
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %s AND t.relname = %s AND c.conname = %s
"""


def defer_indexes(admin: psycopg.Connection, schema: str) -> list[sql.SQL | sql.Composed]:
    """Drop the indexes of ``schema`` that loading does not need (the secondary ones and
    ``LOAD_FREE_KEYS``); returns the statements that build them again, as they were."""
    rebuild: list[sql.SQL | sql.Composed] = []
    for name, definition in admin.execute(SECONDARY_INDEXES, (schema,)).fetchall():
        admin.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
        # PostgreSQL's own definition, schema-qualified: the index as the migration made it.
        rebuild.append(sql.SQL(definition))
    for table, key in LOAD_FREE_KEYS:
        row = admin.execute(KEY_DEFINITION, (schema, table, key)).fetchone()
        if row is None:
            continue
        qualified, name = sql.Identifier(schema, table), sql.Identifier(key)
        admin.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(qualified, name))
        rebuild.append(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(qualified, name, sql.SQL(row[0]))
        )
    return rebuild


def build_indexes(admin: psycopg.Connection, statements: list[sql.SQL | sql.Composed]) -> None:
    """Build what ``defer_indexes`` dropped, so the rebuilt schema ends with the migrated
    shape: a sorted build of each index once, instead of an insertion per row."""
    admin.execute("SET maintenance_work_mem = '256MB'")
    for statement in statements:
        admin.execute(statement)


def caught_up(consumer: object, targets: dict[tuple[str, int], int]) -> bool:
    from confluent_kafka import Consumer

    assert isinstance(consumer, Consumer)
    assigned = consumer.assignment()
    if not assigned:
        return not targets
    # position() moves past transaction markers too, which no record ever reports.
    positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(assigned)}
    return all(positions.get(tp, -1) >= end for tp, end in targets.items())


def differences(
    conn: psycopg.Connection, live: str = "public", rebuilt: str = "rebuild"
) -> dict[str, int]:
    """Rows in one schema's read model and not the other's, per table (0 = identical)."""
    out = {}
    for table in READ_MODELS:
        a, b = sql.Identifier(live, table), sql.Identifier(rebuilt, table)
        query = sql.SQL(
            "SELECT (SELECT count(*) FROM (TABLE {a} EXCEPT ALL TABLE {b}) x) + "
            "(SELECT count(*) FROM (TABLE {b} EXCEPT ALL TABLE {a}) y)"
        ).format(a=a, b=b)
        row = conn.execute(query).fetchone()
        out[table] = int(row[0]) if row else 0
    return out
