"""Processor state: entries per (store, partition, key), the changelog topic their truth.

A processor keeps what it must remember between records (a case as the recommender sees
it, an approval item) in named stores, partitioned like its input: the entry for a case
lives in the partition the case's records arrive on. Every change is written to the
store's compacted changelog topic in the same Kafka transaction as the events it goes
with, so state and events can never disagree; the local copy is only a cache of the
changelog, rebuilt from it when a partition is assigned.

The local copy lives on disk (SQLite, no journal, no fsync: it is thrown away and rebuilt
after any crash), so a process's memory does not grow with the number of cases it has
seen. Two times ride with each entry:
- `expires_ms` (retention): the loop deletes the entry, with a tombstone in the
  changelog, once the wall clock passes it; handlers set it when a case no longer needs
  its entry (some time after it resolved, say);
- `due_ms` (a timer): the handler's `on_due` is shown the entry once the clock passes it
  (an approval's expiry, a review that waited long enough).

`Overlay` is what a handler sees during one batch: reads fall through to the store,
writes stay in the overlay until the batch's transaction has committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

Key = tuple[str, int, str]  # (store, partition, key)


@dataclass(frozen=True, slots=True)
class Entry:
    value: Any  # anything orjson can write
    expires_ms: int | None = None
    due_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One write of a batch: `entry` None deletes the key."""

    store: str
    partition: int
    key: str
    entry: Entry | None


@dataclass(frozen=True, slots=True)
class Due:
    """An entry whose timer has come (see `Entry.due_ms`)."""

    store: str
    partition: int
    key: str
    entry: Entry


def encode_entry(entry: Entry | None) -> bytes | None:
    """The changelog record value of an entry; None (a tombstone) for a deletion."""
    if entry is None:
        return None
    return orjson.dumps({"v": entry.value, "x": entry.expires_ms, "d": entry.due_ms})


def decode_entry(raw: bytes | None) -> Entry | None:
    if raw is None:
        return None
    data = orjson.loads(raw)
    return Entry(data["v"], data.get("x"), data.get("d"))


class Reader(Protocol):
    def read(self, store: str, partition: int, key: str) -> Entry | None: ...


class State(Protocol):
    """What a handler reads and writes; partition = the input partition of the record."""

    def get(self, store: str, partition: int, key: str) -> Any | None: ...

    def entry(self, store: str, partition: int, key: str) -> Entry | None: ...

    def put(
        self,
        store: str,
        partition: int,
        key: str,
        value: Any,
        *,
        expires_ms: int | None = None,
        due_ms: int | None = None,
    ) -> None: ...

    def delete(self, store: str, partition: int, key: str) -> None: ...


class Overlay:
    """One batch's view of the state: reads see the batch's own writes first."""

    def __init__(self, base: Reader) -> None:
        self._base = base
        self._writes: dict[Key, Entry | None] = {}

    def entry(self, store: str, partition: int, key: str) -> Entry | None:
        k = (store, partition, key)
        if k in self._writes:
            return self._writes[k]
        return self._base.read(store, partition, key)

    def get(self, store: str, partition: int, key: str) -> Any | None:
        found = self.entry(store, partition, key)
        return None if found is None else found.value

    def put(
        self,
        store: str,
        partition: int,
        key: str,
        value: Any,
        *,
        expires_ms: int | None = None,
        due_ms: int | None = None,
    ) -> None:
        self._writes[(store, partition, key)] = Entry(value, expires_ms, due_ms)

    def delete(self, store: str, partition: int, key: str) -> None:
        self._writes[(store, partition, key)] = None

    def changes(self) -> list[Change]:
        """The batch's writes, the last one per key, in the order keys were first written."""
        return [Change(s, p, k, e) for (s, p, k), e in self._writes.items()]


class MemoryStore:
    """A dict-backed store: for unit tests of handlers and the bench's plain loop."""

    def __init__(self) -> None:
        self.entries: dict[Key, Entry] = {}

    def read(self, store: str, partition: int, key: str) -> Entry | None:
        return self.entries.get((store, partition, key))

    def apply(self, changes: Iterable[Change]) -> None:
        for c in changes:
            if c.entry is None:
                self.entries.pop((c.store, c.partition, c.key), None)
            else:
                self.entries[(c.store, c.partition, c.key)] = c.entry

    def due(self, now_ms: int, limit: int = 1000) -> list[Due]:
        found = [
            Due(s, p, k, e)
            for (s, p, k), e in self.entries.items()
            if e.due_ms is not None and e.due_ms <= now_ms
        ]
        return sorted(found, key=lambda d: (d.entry.due_ms or 0, d.store, d.partition, d.key))[
            :limit
        ]

    def expired(self, now_ms: int, limit: int = 1000) -> list[Key]:
        return [
            k
            for k, e in self.entries.items()
            if e.expires_ms is not None and e.expires_ms <= now_ms
        ][:limit]


class DiskStore:
    """The loop's local copy of its stores, in one SQLite file owned by this process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A leftover file belongs to a run that ended somehow: the changelog is the truth.
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # A cache rebuilt from the changelog after any crash needs no durability of its own.
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("PRAGMA cache_size = -8192")  # KiB: bounded, whatever the count
        self._db.execute(
            "CREATE TABLE kv (store TEXT NOT NULL, part INTEGER NOT NULL, key TEXT NOT NULL, "
            "value BLOB NOT NULL, expires_ms INTEGER, due_ms INTEGER, "
            "PRIMARY KEY (store, part, key)) WITHOUT ROWID"
        )
        self._db.execute("CREATE INDEX kv_due ON kv (due_ms) WHERE due_ms IS NOT NULL")
        self._db.execute("CREATE INDEX kv_expires ON kv (expires_ms) WHERE expires_ms IS NOT NULL")

    def read(self, store: str, partition: int, key: str) -> Entry | None:
        row = self._db.execute(
            "SELECT value, expires_ms, due_ms FROM kv WHERE store = ? AND part = ? AND key = ?",
            (store, partition, key),
        ).fetchone()
        return None if row is None else Entry(orjson.loads(row[0]), row[1], row[2])

    def apply(self, changes: Iterable[Change]) -> None:
        upserts, deletes = [], []
        for c in changes:
            if c.entry is None:
                deletes.append((c.store, c.partition, c.key))
            else:
                upserts.append(
                    (
                        c.store,
                        c.partition,
                        c.key,
                        orjson.dumps(c.entry.value),
                        c.entry.expires_ms,
                        c.entry.due_ms,
                    )
                )
        with self._transaction():
            self._upsert(upserts)
            if deletes:
                self._db.executemany(
                    "DELETE FROM kv WHERE store = ? AND part = ? AND key = ?", deletes
                )

    def restore(
        self, store: str, partition: int, records: Iterable[tuple[bytes, bytes | None]]
    ) -> int:
        """Replace `store`'s `partition` with what changelog `records` (key, value) say,
        applied in order; returns how many records were read."""
        count = 0
        with self._transaction():
            self._db.execute("DELETE FROM kv WHERE store = ? AND part = ?", (store, partition))
            chunk: list[Change] = []
            for key, value in records:
                chunk.append(Change(store, partition, key.decode(), decode_entry(value)))
                count += 1
                if len(chunk) >= 5000:
                    self._apply_in_transaction(chunk)
                    chunk = []
            self._apply_in_transaction(chunk)
        return count

    def drop(self, store: str, partition: int) -> None:
        """Forget a partition this process no longer owns."""
        self._db.execute("DELETE FROM kv WHERE store = ? AND part = ?", (store, partition))

    def due(self, now_ms: int, limit: int = 1000) -> list[Due]:
        rows = self._db.execute(
            "SELECT store, part, key, value, expires_ms, due_ms FROM kv "
            "WHERE due_ms IS NOT NULL AND due_ms <= ? ORDER BY due_ms, store, part, key LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        return [Due(s, p, k, Entry(orjson.loads(v), x, d)) for s, p, k, v, x, d in rows]

    def expired(self, now_ms: int, limit: int = 1000) -> list[Key]:
        rows = self._db.execute(
            "SELECT store, part, key FROM kv WHERE expires_ms IS NOT NULL AND expires_ms <= ? "
            "LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        return [(s, p, k) for s, p, k in rows]

    def count(self, store: str | None = None) -> int:
        row = (
            self._db.execute("SELECT count(*) FROM kv WHERE store = ?", (store,)).fetchone()
            if store is not None
            else self._db.execute("SELECT count(*) FROM kv").fetchone()
        )
        return int(row[0])

    def count_due(self, store: str, before_ms: int | None = None) -> int:
        """Entries of `store` with a timer (due before `before_ms`, if given)."""
        row = self._db.execute(
            "SELECT count(*) FROM kv WHERE store = ? AND due_ms IS NOT NULL AND due_ms <= ?",
            (store, before_ms if before_ms is not None else 2**62),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()

    def _apply_in_transaction(self, changes: Sequence[Change]) -> None:
        # Within restore's transaction: the same upserts and deletes, in record order
        # (a key written then deleted in one chunk must end deleted).
        for c in changes:
            if c.entry is None:
                self._db.execute(
                    "DELETE FROM kv WHERE store = ? AND part = ? AND key = ?",
                    (c.store, c.partition, c.key),
                )
            else:
                self._upsert(
                    [
                        (
                            c.store,
                            c.partition,
                            c.key,
                            orjson.dumps(c.entry.value),
                            c.entry.expires_ms,
                            c.entry.due_ms,
                        )
                    ]
                )

    def _upsert(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._db.executemany(
                "INSERT INTO kv (store, part, key, value, expires_ms, due_ms) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (store, part, key) DO UPDATE SET "
                "value = excluded.value, expires_ms = excluded.expires_ms, "
                "due_ms = excluded.due_ms",
                rows,
            )

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    """BEGIN … COMMIT around a group of writes (one fsync-free commit per batch)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")


def iter_changes(changes: Sequence[Change]) -> Iterator[tuple[str, int, bytes, bytes | None]]:
    """(store, partition, key, changelog value) of each change, for producing."""
    for c in changes:
        yield c.store, c.partition, c.key.encode(), encode_entry(c.entry)
