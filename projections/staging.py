"""Staging tables: a batch's rows reach PostgreSQL in one binary COPY per table, and one
set-based statement per read model merges them into the real table.

A staging table is a session's temporary table (``pg_temp``), created once per connection
(``prepare``) with ``ON COMMIT DELETE ROWS``: it is empty at the start of every batch's
transaction, and a rolled-back batch leaves nothing in it either. Its columns are the read
model's own (``LIKE``, so they follow the migrations) plus the merge's control columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.adapt import Dumper

JSONB_OID = 3802


class _JsonTextDumper(Dumper):
    """jsonb in binary COPY from text that is already JSON (an event's JSON form).

    psycopg's own jsonb dumper serialises a Python object; the read models hold the JSON
    text already (serialised once per event), so it is sent as is: jsonb's binary format
    is a version byte (1) followed by the JSON text.
    """

    format = pq.Format.BINARY
    oid = JSONB_OID

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()


class _JsonText(str):
    """Only a key to register the dumper under; values stay plain ``str``."""


@dataclass(frozen=True)
class Stage:
    """One staging table: ``like`` the read model's table (if any), plus ``extra`` columns
    (name, SQL type), such as the control columns that tell a merge statement how the
    batch changed each row."""

    name: str
    like: str | None
    extra: tuple[tuple[str, str], ...] = ()
    key: tuple[str, ...] = ()
    # Column name -> type oid, read from the catalog once the table exists.
    oids: dict[str, int] = field(default_factory=dict, compare=False)

    def create(self, cur: psycopg.Cursor) -> None:
        """Create the table in this session (idempotent) and learn its column types."""
        parts = [sql.SQL("LIKE {}").format(sql.Identifier(self.like))] if self.like else []
        parts += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in self.extra]
        if self.key:
            key = sql.SQL(", ").join(map(sql.Identifier, self.key))
            parts.append(sql.SQL("PRIMARY KEY ({})").format(key))
        cur.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                sql.Identifier(self.name), sql.SQL(", ").join(parts)
            )
        )
        self.oids.clear()
        self.oids.update(table_oids(cur, f"pg_temp.{self.name}"))

    def copy(
        self, cur: psycopg.Cursor, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Binary COPY of ``rows`` (values in ``columns`` order) into the staging table."""
        copy_binary(cur, sql.Identifier("pg_temp", self.name), columns, self.oids, rows)


def copy_binary(
    cur: psycopg.Cursor,
    table: sql.Composable,
    columns: Sequence[str],
    oids: dict[str, int],
    rows: Iterable[Sequence[Any]],
) -> None:
    """One binary COPY of ``rows`` into ``table``.

    Binary, because psycopg formats a row of twenty values in ~0.6 µs of CPU there against
    ~5 µs in text COPY (measured here): the formatting, not PostgreSQL, was the cost.
    jsonb columns take the JSON text as a ``str``.
    """
    cur.adapters.register_dumper(_JsonText, _JsonTextDumper)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(statement) as copy:
        copy.set_types([oids[c] for c in columns])
        for row in rows:
            copy.write_row(row)


def table_oids(cur: psycopg.Cursor, table: str) -> dict[str, int]:
    """Column name -> type oid of ``table`` as the session's search_path finds it."""
    rows = cur.execute(
        "SELECT attname, atttypid::int FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table,),
    ).fetchall()
    return dict(rows)
