"""The audit chain anchored outside the database (issue 14, deliverable 5): the read models
publish its signed heads on Kafka, and `casegate audit verify` catches what the hash chain
alone cannot — a truncated tail, or a row rewritten with every hash after it recomputed, by
someone who owns the table (the append-only trigger disabled, as such an attacker can)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import psycopg
import pytest
from confluent_kafka import Producer

from infra.db import database_urls
from infra.kafka import producer_config
from infra.secrets import anchor_key
from infra.settings import Settings
from projections.anchors import read_anchors
from projections.audit import COLUMNS, GENESIS, READ_CHAIN, row_hash, verify
from schemas.codec import Codec
from tests.chaos.check import run_audit_verify
from tests.integration import scenario
from tests.integration.helpers import eventually, running
from tests.stack import Stack

STORY = scenario.story()
Chain = tuple[str, int]


@pytest.fixture
def anchored(stack: Stack) -> Iterator[Settings]:
    """The story projected, and the read models stopped once every chain's head is anchored."""
    settings = stack.isolated(audit_anchor_interval_s=0.2)
    codec = Codec.load()
    producer = Producer(producer_config(settings))
    for event in STORY:
        value, headers = codec.encode(event)
        producer.produce(
            settings.topic(event.topic), key=event.case_id.encode(), value=value, headers=headers
        )
    assert producer.flush(30) == 0
    with running(settings, ("projections.worker", "readmodels")):
        eventually(lambda: rows(settings) == len(STORY), timeout_s=90, what="the story's rows")
        eventually(
            lambda: anchored_heads(settings) == heads(settings),
            timeout_s=60,
            what="every chain's head anchored",
        )
    yield settings


def rows(settings: Settings) -> int:
    with psycopg.connect(database_urls(settings).app) as conn:
        row = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    return int(row[0]) if row else 0


def heads(settings: Settings) -> dict[Chain, tuple[int, str]]:
    with psycopg.connect(database_urls(settings).app) as conn:
        found = conn.execute(
            "SELECT DISTINCT ON (topic, partition) topic, partition, seq, hash FROM audit_log "
            "ORDER BY topic, partition, seq DESC"
        ).fetchall()
    return {(t, p): (s, h) for t, p, s, h in found}


def anchored_heads(settings: Settings) -> dict[Chain, tuple[int, str]]:
    latest, forged = read_anchors(settings, anchor_key(settings))
    assert forged == []
    return {chain: (a.seq, a.hash) for chain, a in latest.items()}


def longest_chain(settings: Settings) -> tuple[Chain, int]:
    (chain, (seq, _)), *_ = sorted(heads(settings).items(), key=lambda kv: -kv[1][0])
    return chain, seq


def as_owner(settings: Settings, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Run ``statements`` as the table's owner with the append-only trigger disabled: what
    an attacker holding the database (and only the database) can do."""
    with psycopg.connect(database_urls(settings).admin) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for statement, params in statements:
            conn.execute(statement, params)
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


def chain_verifies(settings: Settings) -> bool:
    with psycopg.connect(database_urls(settings).app) as conn:
        return verify(conn).broken is None


def test_an_untouched_log_verifies_against_its_anchors(anchored: Settings) -> None:
    result = run_audit_verify(anchored, timeout_s=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(STORY)} rows" in result.stdout
    assert f"{len(heads(anchored))} chain heads match their anchors" in result.stdout


def test_a_truncated_tail_fails_verification(anchored: Settings) -> None:
    # Given the owner deletes the last two rows of the longest chain ...
    (topic, partition), head = longest_chain(anchored)
    assert head >= 2
    as_owner(
        anchored,
        (
            "DELETE FROM audit_log WHERE topic = %s AND partition = %s AND seq > %s",
            (topic, partition, head - 2),
        ),
    )
    # ... the chain itself still verifies: nothing inside it disagrees ...
    assert chain_verifies(anchored)

    # ... but not against the anchors: the cut is named, and verify exits non-zero.
    result = run_audit_verify(anchored, timeout_s=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT intact" in result.stderr
    assert f"{topic}[{partition}]: the chain ends at seq {head - 2}" in result.stderr
    assert "truncated (2 row(s) missing)" in result.stderr


def test_a_rewritten_row_with_its_chain_recomputed_fails_verification(
    anchored: Settings,
) -> None:
    # Given the owner rewrites the payload of the longest chain's first row and recomputes
    # every hash after it, so that the chain is self-consistent again ...
    (topic, partition), head = longest_chain(anchored)
    with psycopg.connect(database_urls(anchored).app) as conn:
        chain = conn.execute(READ_CHAIN, (topic, partition)).fetchall()
    names = list(COLUMNS)
    prev, updates = GENESIS, []
    for n, row in enumerate(chain):
        values = dict(zip(names, row, strict=True))
        if n == 0:
            payload = orjson.loads(values["payload"])
            payload["actor_note"] = "mallory was here"
            values["payload"] = orjson.dumps(payload).decode()
        content = [values[c] for c in names[:-2]]
        digest = row_hash(prev, content)
        updates.append(
            (
                "UPDATE audit_log SET payload = %s, prev_hash = %s, hash = %s "
                "WHERE topic = %s AND partition = %s AND seq = %s",
                (values["payload"], prev, digest, topic, partition, values["seq"]),
            )
        )
        prev = digest
    as_owner(anchored, *updates)
    assert chain_verifies(anchored)  # the hash chain alone cannot tell

    result = run_audit_verify(anchored, timeout_s=120)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{topic}[{partition}]: seq {head} does not have the hash anchored" in result.stderr
    assert "rewritten" in result.stderr
