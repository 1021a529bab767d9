"""``audit_log``: one append-only row per event, hash-chained per source topic-partition.

Each row's hash is sha256(previous row's hash + the row's canonical form). The chain follows
the partition's own order, so a replay from the topics rebuilds the same chain, and
``verify`` recomputes every hash from the stored columns to find the first changed row.
The same table deduplicates: an event whose ``(topic, event_id)`` is already recorded is
dropped before any read model sees it. An id names an event on its own topic only, so an
upstream event cannot hide a later internal one by carrying its id; and on the topics
upstream writes, a *different* event under an id already recorded is not a duplicate but a
collision, set aside to the dead-letter topic with its reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

from projections.describe import actor_of, policy_version_of
from projections.envelope import Admitted, Envelope
from projections.staging import Load, Table
from schemas.jsonform import format_timestamp

GENESIS = "0" * 64
COLUMNS = (
    "topic",
    "partition",
    "seq",
    "kafka_offset",
    "event_id",
    "event_type",
    "case_id",
    "occurred_at",
    "actor",
    "policy_version",
    "payload",
    "prev_hash",
    "hash",
)
_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
READ_CHAIN = sql.SQL(
    "SELECT {} FROM audit_log WHERE topic = %s AND partition = %s ORDER BY seq"
).format(_COLUMN_LIST)
# Which of the batch's (topic, event_id) pairs the log holds already, with where and what
# (md5 of the payload, to tell a redelivery from a collision). One JSON parameter, not
# text[]s: psycopg builds an array parameter element by element in Python (~8x the CPU of
# orjson here), and unlike a COPY into a staging table it can go in a pipeline.
SEEN = """
SELECT a.topic, a.event_id, a.partition, a.kafka_offset, md5(a.payload)
FROM json_to_recordset(%s::json) AS b (t text, e text)
JOIN audit_log a ON a.topic = b.t AND a.event_id = b.e
"""
# The head (last seq and hash) of every chain a batch extends, in one round trip.
HEADS = """
SELECT c.topic, c.partition, h.seq, h.hash
FROM unnest(%s::text[], %s::int[]) AS c (topic, partition)
LEFT JOIN LATERAL (
    SELECT seq, hash FROM audit_log a
    WHERE a.topic = c.topic AND a.partition = c.partition ORDER BY seq DESC LIMIT 1
) h ON true
"""


def row_hash(prev_hash: str, content: Sequence[Any]) -> str:
    """The one definition of a row's hash, used to write and to verify.

    ``content`` is the row's columns up to ``payload`` (COLUMNS minus the two hashes);
    timestamps take their JSON form's spelling (``schemas.jsonform.format_timestamp``).
    """
    canonical = orjson.dumps([_timestamp(v) if isinstance(v, datetime) else v for v in content])
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical).hexdigest()


def _timestamp(moment: datetime) -> str:
    """Exactly ``format_timestamp(moment)``, in less than half its time (strftime is slow;
    hashing is on every event's path): ``isoformat`` spells a UTC time the same way from
    the year 1000 on. Earlier years (spelt unpadded by strftime) go to format_timestamp."""
    utc = moment.astimezone(UTC)
    if utc.year < 1000:
        return format_timestamp(moment)
    # "…T09:00:00.123+00:00" -> "…T09:00:00.123Z"
    return utc.isoformat(timespec="milliseconds")[:-6] + "Z"


class EventIdCollision(Exception):
    """A different event under an id its topic has recorded already (the dead letter's
    reason starts with ``event_id_collision``)."""


def _digest(env: Envelope) -> str:
    return hashlib.md5(env.payload.encode(), usedforsecurity=False).hexdigest()


class AuditLogProjection:
    name: str = "audit_log"

    def __init__(self, checked_topics: frozenset[str] = frozenset()) -> None:
        self.table = Table("audit_log")
        # Topics (full names) whose ids their producers choose (upstream's): there a
        # repeated id with other content is a collision. Elsewhere ids are derived, and a
        # repeat is a redelivery even when an incidental field differs (a dead letter
        # produced again after a crash, a review retried with its idempotency key).
        self.checked_topics = checked_topics
        # The head of every chain the batch in hand extends, read by ``fresh`` in the same
        # round trip as the deduplication and used by ``apply`` in the same transaction.
        self._heads: dict[tuple[str, int], tuple[int, str]] = {}
        # The heads ``apply`` left, for the anchors (``take_heads``).
        self._written: dict[tuple[str, int], tuple[int, str]] = {}

    def prepare(self, cur: psycopg.Cursor) -> None:
        self.table.learn(cur)

    def unique(self, batch: Sequence[Envelope]) -> list[Envelope]:
        """The first occurrence of each event in the batch (a duplicate changes nothing).

        On a checked topic an occurrence with other content is kept too, for ``fresh`` to
        set aside as a collision.
        """
        seen: set[tuple[str, str]] = set()
        contents: dict[tuple[str, str], set[str]] = {}
        out = []
        for env in batch:
            key = (env.topic, env.event.event_id)
            if key not in seen:
                seen.add(key)
                out.append(env)
                if env.topic in self.checked_topics:
                    contents[key] = {_digest(env)}
            elif key in contents and (digest := _digest(env)) not in contents[key]:
                contents[key].add(digest)
                out.append(env)
        return out

    def fresh(self, cur: psycopg.Cursor, batch: Sequence[Envelope]) -> Admitted:
        """The envelopes whose event is not recorded yet, and the collisions; and, for
        ``apply``, the head of each chain the batch extends. Both are sent before either is
        read, so that in a pipeline they cost one round trip."""
        pairs = orjson.dumps([{"t": env.topic, "e": env.event.event_id} for env in batch])
        chains = sorted({(env.topic, env.partition) for env in batch})
        with cur.connection.cursor() as heads:
            cur.execute(SEEN, (pairs.decode(),))
            heads.execute(HEADS, ([t for t, _ in chains], [p for _, p in chains]))
            seen = {(t, e): (p, o, digest) for t, e, p, o, digest in cur.fetchall()}
            self._heads = {
                (t, p): (seq, digest) if seq is not None else (0, GENESIS)
                for t, p, seq, digest in heads.fetchall()
            }
        if not seen and len({(env.topic, env.event.event_id) for env in batch}) == len(batch):
            return Admitted(list(batch), [])
        fresh: list[Envelope] = []
        collisions: list[tuple[Envelope, Exception]] = []
        for env in batch:
            key = (env.topic, env.event.event_id)
            first = seen.get(key)
            if first is None:
                # New to the log: the batch's first occurrence is the event from now on.
                seen[key] = (env.partition, env.offset, _digest(env))
                fresh.append(env)
                continue
            if env.topic in self.checked_topics and _digest(env) != first[2]:
                collisions.append((env, _collision(env, first[0], first[1])))
        return Admitted(fresh, collisions)

    @staticmethod
    def plan(batch: Sequence[Envelope]) -> list[tuple[Any, ...]]:
        """Each event's row but its place in the chain (seq and hashes need the head)."""
        return [
            (
                env.topic,
                env.partition,
                env.offset,
                (e := env.event).event_id,
                e.event_type,
                e.case_id,
                e.occurred_at,
                actor_of(e),
                policy_version_of(e),
                env.payload,
            )
            for env in batch
        ]

    def apply(self, load: Load, plan: list[tuple[Any, ...]]) -> None:
        """Append one row per event, each chained to the one before it in its partition.

        The chain is computed in one pass over the batch from each chain's head as stored
        (read by ``fresh`` in this transaction), so the rows and their hashes commit
        together or not at all.
        """
        heads, self._heads = self._heads, {}
        missing = {(row[0], row[1]) for row in plan} - heads.keys()
        if missing:
            raise RuntimeError(f"chain heads not read in this transaction: {sorted(missing)}")
        load.append(self.table, COLUMNS, self._rows(plan, heads))
        self._written.update({chain: heads[chain] for chain in {(r[0], r[1]) for r in plan}})

    def take_heads(self) -> dict[tuple[str, int], tuple[int, str]]:
        """The head (seq, hash) of every chain extended since the last call."""
        written, self._written = self._written, {}
        return written

    @staticmethod
    def _rows(
        plan: list[tuple[Any, ...]], heads: dict[tuple[str, int], tuple[int, str]]
    ) -> Iterator[tuple[Any, ...]]:
        for topic, partition, *rest in plan:
            chain = (topic, partition)
            seq, prev = heads[chain]
            seq += 1
            content = (topic, partition, seq, *rest)
            digest = row_hash(prev, content)
            heads[chain] = (seq, digest)
            yield (*content, prev, digest)


def _collision(env: Envelope, partition: int, offset: int) -> EventIdCollision:
    return EventIdCollision(
        f"event_id_collision: {env.event.event_type} {env.event.event_id} at {env.position} "
        f"differs from the event recorded under the same id at {env.topic}[{partition}]@"
        f"{offset}; the recorded one stays, this one is set aside"
    )


@dataclass(frozen=True)
class Broken:
    topic: str
    partition: int
    seq: int
    event_id: str
    problem: str


@dataclass(frozen=True)
class Verification:
    rows: int
    chains: int
    broken: Broken | None


def verify(conn: psycopg.Connection, progress: Callable[[int], None] | None = None) -> Verification:
    """Walk every chain in order; stop at the first row that does not match."""
    rows = chains = 0
    for chain in _chains(conn):
        chains += 1
        prev, expected_seq = GENESIS, 1
        for r in chain:
            rows += 1
            # COLUMNS order: the content, then prev_hash and hash.
            content, prev_hash, digest = r[:-2], r[-2], r[-1]
            topic, partition, seq, event_id = r[0], r[1], r[2], r[4]
            problem = None
            if seq != expected_seq:
                problem = f"sequence jumps from {expected_seq - 1} to {seq}: rows are missing"
            elif prev_hash != prev:
                problem = "prev_hash does not match the previous row's hash"
            elif row_hash(prev, content) != digest:
                problem = "content does not match its hash: the row was changed"
            if problem:
                return Verification(rows, chains, Broken(topic, partition, seq, event_id, problem))
            prev, expected_seq = digest, seq + 1
            if progress and rows % 10000 == 0:
                progress(10000)
    return Verification(rows, chains, None)


def _chains(conn: psycopg.Connection) -> Iterator[Iterator[tuple[Any, ...]]]:
    keys = conn.execute(
        "SELECT DISTINCT topic, partition FROM audit_log ORDER BY topic, partition"
    ).fetchall()
    for n, (topic, partition) in enumerate(keys):
        yield _chain(conn, f"audit_chain_{n}", topic, partition)


def _chain(
    conn: psycopg.Connection, name: str, topic: str, partition: int
) -> Iterator[tuple[Any, ...]]:
    # A server-side cursor: verifying millions of rows takes constant memory.
    with conn.cursor(name=name) as cur:
        cur.execute(READ_CHAIN, (topic, partition))
        yield from cur
