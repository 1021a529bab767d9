"""How a batch's rows reach PostgreSQL: appended to a read model's table, or merged into one
by a set-based statement that reads them as the relation ``d``.

Two ways, one result. A small batch (the live worker's usual one) sends each table's rows
as one JSON parameter, unpacked by ``json_to_recordset`` with the columns' own types: no
COPY, so the whole transaction goes to the server in one pipeline (two round trips: the
reads its writes depend on, then the writes and the commit) and touches no temporary
table. A large batch (a replay, a backlog) goes by binary COPY, straight into the table or
into a staging table that the merge reads through its primary key.

A staging table is a session's temporary table (``pg_temp``), created once per connection
(``Stage.create``) with ``ON COMMIT DELETE ROWS``: it is empty at the start of every batch's
transaction, and a rolled-back batch leaves nothing in it either. Its columns are the read
model's own (``LIKE``, so they follow the migrations) plus the merge's control columns.
PostgreSQL empties every such table at the commit of any transaction that used one
(measured here: ~1.8 ms for the read models' stages), which is why small batches use none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg import pq, sql
from psycopg.adapt import Dumper

JSONB_OID = 3802
FLOAT_OIDS = frozenset({700, 701})
# How PostgreSQL spells the floats JSON cannot hold (orjson writes them as null).
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


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
class Column:
    name: str
    oid: int
    type: str  # as format_type spells it: "timestamp with time zone", "text[]"


@dataclass(eq=False)
class Table:
    """A table rows are written to, with its columns' types as the catalog has them
    (``learn``, once per connection, after the migrations)."""

    name: str
    temporary: bool = False
    columns: dict[str, Column] = field(default_factory=dict)
    # Statements composed once per column list (and merge), not once per batch: composing
    # one with its column definitions costs ~0.1 ms of Python.
    _statements: dict[tuple[Any, ...], bytes] = field(default_factory=dict)

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier("pg_temp", self.name) if self.temporary else sql.Identifier(self.name)

    def learn(self, cur: psycopg.Cursor) -> None:
        name = f"pg_temp.{self.name}" if self.temporary else self.name
        rows = cur.execute(
            "SELECT attname, atttypid::int, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (name,),
        ).fetchall()
        self.columns = {n: Column(n, oid, t) for n, oid, t in rows}
        self._statements.clear()

    def copy(
        self, cur: psycopg.Cursor, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """One binary COPY of ``rows`` (values in ``columns`` order) into the table.

        Binary, because psycopg formats a row of twenty values in ~0.6 µs of CPU there
        against ~5 µs in text COPY (measured here): the formatting, not PostgreSQL, was the
        cost. jsonb columns take the JSON text as a ``str``.
        """
        cur.adapters.register_dumper(_JsonText, _JsonTextDumper)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            self.identifier, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with cur.copy(statement) as copy:
            copy.set_types([self.columns[c].oid for c in columns])
            for row in rows:
                copy.write_row(row)

    def recordset(self, columns: Sequence[str]) -> sql.Composed:
        """``json_to_recordset(%s::json) AS r (column type, …)``: one JSON parameter (see
        ``json_rows``) read as rows of ``columns`` with the table's own types."""
        definitions = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(self.columns[c].type))
            for c in columns
        )
        return sql.SQL("json_to_recordset(%s::json) AS r ({})").format(definitions)

    def insert(self, cur: psycopg.Cursor, columns: Sequence[str]) -> bytes:
        """``INSERT`` of the rows a ``json_rows`` parameter holds."""
        key = ("insert", *columns)
        statement = self._statements.get(key)
        if statement is None:
            names = sql.SQL(", ").join(map(sql.Identifier, columns))
            statement = (
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}")
                .format(self.identifier, names, names, self.recordset(columns))
                .as_bytes(cur)
            )
            self._statements[key] = statement
        return statement

    def json_rows(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
        """``rows`` as the JSON that ``recordset`` reads: the very values a COPY would store.

        Each value is read by its column type's input function from its JSON spelling:
        timestamps in ISO 8601 with their offset, lists as arrays, jsonb values (JSON text
        here, as for COPY) inlined as they are, and the floats JSON has no number for
        (NaN, ±infinity) as PostgreSQL spells them.
        """
        jsonb = [i for i, c in enumerate(columns) if self.columns[c].oid == JSONB_OID]
        floats = [i for i, c in enumerate(columns) if self.columns[c].oid in FLOAT_OIDS]
        out = []
        for row in rows:
            if jsonb or floats:
                values = list(row)
                for i in jsonb:
                    if values[i] is not None:
                        values[i] = orjson.Fragment(values[i])
                for i in floats:
                    value = values[i]
                    if value is not None and not math.isfinite(value):
                        values[i] = "NaN" if math.isnan(value) else NON_FINITE[value]
                row = values
            out.append(dict(zip(columns, row, strict=True)))
        return orjson.dumps(out).decode()


@dataclass(eq=False)
class Stage:
    """One staging table: ``like`` the read model's table (if any), plus ``extra`` columns
    (name, SQL type), such as the control columns that tell a merge statement how the
    batch changed each row."""

    name: str
    like: str | None
    extra: tuple[tuple[str, str], ...] = ()
    key: tuple[str, ...] = ()
    table: Table = field(init=False)

    def __post_init__(self) -> None:
        self.table = Table(self.name, temporary=True)

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
        self.table.learn(cur)

    def merge(
        self, cur: psycopg.Cursor, statement: str, columns: Sequence[str], inline: bool
    ) -> bytes:
        """``statement`` reading the batch's rows as ``d``: inlined from the JSON parameter
        (materialised once: a merge reads ``d`` twice), or from this table, inlined in place
        so that the merge's look-ups by key use its primary key."""
        key = ("merge", statement, inline, *columns)
        table = self.table
        composed = table._statements.get(key)
        if composed is None:
            if inline:
                source = sql.SQL("WITH d AS MATERIALIZED (SELECT * FROM {}) ").format(
                    table.recordset(columns)
                )
            else:
                source = sql.SQL("WITH d AS NOT MATERIALIZED (TABLE {}) ").format(table.identifier)
            composed = (source + sql.SQL(statement)).as_bytes(cur)  # type: ignore[arg-type]
            table._statements[key] = composed
        return composed


class Load:
    """How one transaction sends its rows: ``inline`` (one JSON parameter per statement and
    no COPY, so that the transaction can be pipelined) or by binary COPY."""

    def __init__(self, cur: psycopg.Cursor, inline: bool) -> None:
        self.cur = cur
        self.inline = inline

    def append(self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert ``rows`` into ``table`` (new rows only: the caller deduplicated them)."""
        if self.inline:
            self.cur.execute(table.insert(self.cur, columns), (table.json_rows(columns, rows),))
        else:
            table.copy(self.cur, columns, rows)

    def merge(
        self, stage: Stage, columns: Sequence[str], rows: Sequence[Sequence[Any]], statement: str
    ) -> None:
        """Run ``statement`` with the batch's ``rows`` as the relation ``d``."""
        if not rows:
            return
        if self.inline:
            self.cur.execute(
                stage.merge(self.cur, statement, columns, True),
                (stage.table.json_rows(columns, rows),),
            )
        else:
            stage.table.copy(self.cur, columns, rows)
            self.cur.execute(stage.merge(self.cur, statement, columns, False))


class AppendOnly:
    """A read model that appends each event's rows to a table named as itself: it learns
    the table's columns, and appends what its ``plan`` made of a batch (the events are new:
    deduplicated before)."""

    name: str
    columns: tuple[str, ...]

    def __init__(self) -> None:
        self.table = Table(self.name)

    def prepare(self, cur: psycopg.Cursor) -> None:
        self.table.learn(cur)

    def apply(self, load: Load, plan: list[tuple[Any, ...]]) -> None:
        """Append the rows in one statement."""
        if plan:
            load.append(self.table, self.columns, plan)
