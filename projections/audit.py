"""``audit_log``: one append-only row per event, hash-chained per source topic-partition.

Each row's hash is sha256(previous row's hash + the row's canonical form). The chain follows
the partition's own order, so a replay from the topics rebuilds the same chain, and
``verify`` recomputes every hash from the stored columns to find the first changed row.
The same table deduplicates: an event whose ``event_id`` is already recorded is dropped
before any read model sees it.
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
from projections.envelope import Envelope
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
# Which of the batch's event ids (a JSON array) the log holds already. One JSON parameter,
# not a text[]: psycopg builds an array parameter element by element in Python (~8x the CPU
# of orjson here), and unlike a COPY into a staging table it can go in a pipeline.
SEEN = (
    "SELECT event_id FROM audit_log WHERE event_id IN (SELECT json_array_elements_text(%s::json))"
)
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


class AuditLogProjection:
    name: str = "audit_log"

    def __init__(self) -> None:
        self.table = Table("audit_log")
        # The head of every chain the batch in hand extends, read by ``fresh`` in the same
        # round trip as the deduplication and used by ``apply`` in the same transaction.
        self._heads: dict[tuple[str, int], tuple[int, str]] = {}

    def prepare(self, cur: psycopg.Cursor) -> None:
        self.table.learn(cur)

    @staticmethod
    def unique(batch: Sequence[Envelope]) -> list[Envelope]:
        """The first occurrence of each event in the batch (a duplicate changes nothing)."""
        seen: set[str] = set()
        out = []
        for env in batch:
            event_id = env.event.event_id
            if event_id not in seen:
                seen.add(event_id)
                out.append(env)
        return out

    def fresh(self, cur: psycopg.Cursor, batch: Sequence[Envelope]) -> list[Envelope]:
        """The envelopes (each event once) whose event is not recorded yet; and, for
        ``apply``, the head of each chain the batch extends. Both are sent before either is
        read, so that in a pipeline they cost one round trip."""
        ids = orjson.dumps([env.event.event_id for env in batch]).decode()
        chains = sorted({(env.topic, env.partition) for env in batch})
        with cur.connection.cursor() as heads:
            cur.execute(SEEN, (ids,))
            heads.execute(HEADS, ([t for t, _ in chains], [p for _, p in chains]))
            seen = {r[0] for r in cur.fetchall()}
            self._heads = {
                (t, p): (seq, digest) if seq is not None else (0, GENESIS)
                for t, p, seq, digest in heads.fetchall()
            }
        if not seen:
            return list(batch)
        return [env for env in batch if env.event.event_id not in seen]

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
