"""Avro single-object encoding of casegate events (architecture §3, wire format).

A value is `C3 01`, the 8-byte CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form (little-endian), then the Avro binary body. Readers find the writer
schema by fingerprint, among current and historical versions, and read with the current
schema of that event type. Any bad input raises a `CodecError` subclass, never anything
else, so a consumer can dead-letter it and move on.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from schemas.codec_errors import CodecError, InvalidEvent, UndecodableRecord, UnknownSchema
from schemas.conform import Form, conform_record
from schemas.converters import RecordConverters, build_converters
from schemas.events import EVENT_TYPES, Event
from schemas.registry import (
    BUNDLED_DIR,
    HISTORY_DIR,
    SchemaSet,
    bundled_schema_set,
    load_schema_set,
)

__all__ = [
    "EVENT_TYPE_HEADER",
    "IMPORT_HEADER",
    "MAGIC",
    "Codec",
    "CodecError",
    "InvalidEvent",
    "UndecodableRecord",
    "UnknownSchema",
]

MAGIC = b"\xc3\x01"
EVENT_TYPE_HEADER = "event_type"
# Marks a record of history being imported (`casegate import history`, or a producer's
# own backfill): processors learn from it and the read models project it, but a case
# whose CaseOpened carries it is never recommended for (and so never decided, queued or
# executed). Any value but "false"/"0" counts; `casegate import history` writes "history".
IMPORT_HEADER = "casegate_import"
_PREFIX_LEN = len(MAGIC) + 8

# Kafka clients differ: (key, value) pairs (confluent-kafka, aiokafka) or a mapping.
HeaderValue = bytes | str | None
Headers = Sequence[tuple[str, HeaderValue]] | Mapping[str, HeaderValue]


def is_imported(headers: Headers | None) -> bool:
    """Does a record carry the history-import marker (`IMPORT_HEADER`)?"""
    if not headers:
        return False
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == IMPORT_HEADER:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            return (text or "").strip().lower() not in ("false", "0")
    return False


@dataclass(frozen=True, slots=True)
class _Writer:
    """Everything needed to read bytes written with one writer schema."""

    event_type: str
    schema: dict[str, Any]
    reader: dict[str, Any] | None  # None when the writer is the current schema
    header: bytes  # expected `event_type` header value
    converters: RecordConverters | None  # None when no dataclass exists for the type


@dataclass(frozen=True, slots=True)
class _Current:
    """Everything needed to write one event type with its current schema."""

    event_type: str
    schema: dict[str, Any]
    prefix: bytes  # marker + fingerprint
    headers: tuple[tuple[str, bytes], ...]
    converters: RecordConverters | None


class Codec:
    """Encoder/decoder over one set of schemas; build once per process with `load`."""

    def __init__(self, schemas: SchemaSet) -> None:
        converters = {
            event_type: build_converters(EVENT_TYPES[event_type], ws.parsed)
            for event_type, ws in schemas.current.items()
            if event_type in EVENT_TYPES
        }
        self._current: dict[str, _Current] = {
            event_type: _Current(
                event_type=event_type,
                schema=ws.parsed,
                prefix=MAGIC + ws.fingerprint,
                headers=((EVENT_TYPE_HEADER, event_type.encode()),),
                converters=converters.get(event_type),
            )
            for event_type, ws in schemas.current.items()
        }
        self._by_class = {
            EVENT_TYPES[event_type]: current
            for event_type, current in self._current.items()
            if current.converters is not None
        }
        self._writers: dict[bytes, _Writer] = {}
        for fp, ws in schemas.writers.items():
            reader = schemas.current[ws.event_type]
            self._writers[fp] = _Writer(
                event_type=ws.event_type,
                schema=ws.parsed,
                reader=None if reader.fingerprint == fp else reader.parsed,
                header=ws.event_type.encode(),
                converters=converters.get(ws.event_type),
            )
        self.fingerprints: dict[bytes, str] = {fp: w.event_type for fp, w in self._writers.items()}

    @classmethod
    def load(cls, directory: Path | None = None, history: Path | None = None) -> Codec:
        """Codec over `directory` (default: the bundled schemas) and its `history`.

        `history` defaults to the bundled history only when `directory` is defaulted too.
        """
        if directory is None and history is None:
            return cls(bundled_schema_set())
        directory = directory or BUNDLED_DIR
        if history is None and directory == BUNDLED_DIR:
            history = HISTORY_DIR
        return cls(load_schema_set(directory, history))

    # --- encoding ------------------------------------------------------------------------

    def encode(self, event: Event) -> tuple[bytes, list[tuple[str, bytes]]]:
        """Value bytes and Kafka headers for `event`; InvalidEvent if it breaks its schema."""
        current = self._by_class.get(type(event))
        if current is None or current.converters is None:
            raise InvalidEvent(f"not a registered event class: {type(event).__name__}")
        return self._write(current, current.converters.to_avro(event)), list(current.headers)

    def to_record(self, event: Event) -> dict[str, Any]:
        """`event` as a dict in Avro-python form, checked against its schema."""
        return self._converters_for(type(event)).to_avro(event)

    def from_record(self, event_type: str, record: dict[str, Any]) -> Event:
        """The event for a dict in Avro-python form, checked against the current schema."""
        current = self._current_for(event_type)
        if current.converters is None:
            raise InvalidEvent(f"no event class for {event_type}")
        return current.converters.from_avro(conform_record(current.schema, record, Form.AVRO))

    def encode_record(self, event_type: str, record: dict[str, Any]) -> bytes:
        """Value bytes for a dict in Avro-python form (datetimes for timestamp-millis)."""
        current = self._current_for(event_type)
        return self._write(current, conform_record(current.schema, record, Form.AVRO))

    def _write(self, current: _Current, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(current.prefix)
        try:
            schemaless_writer(out, current.schema, record, disable_tuple_notation=True)
        except Exception as exc:  # fastavro signals a bad datum with assorted types
            raise InvalidEvent(f"{current.event_type}: {type(exc).__name__}: {exc}") from None
        return out.getvalue()

    # --- decoding ------------------------------------------------------------------------

    def decode(self, value: bytes | None, headers: Headers | None = None) -> Event:
        """The event in `value`, read with the current schema of its type."""
        writer, record = self._read(value, headers)
        if writer.converters is None:
            raise InvalidEvent(f"no event class for {writer.event_type}")
        try:
            return writer.converters.from_avro(record)
        except Exception as exc:  # a schema/dataclass mismatch must not crash a consumer
            raise InvalidEvent(f"{writer.event_type}: {type(exc).__name__}: {exc}") from None

    def decode_record(self, value: bytes) -> tuple[str, dict[str, Any]]:
        """(event_type, dict in Avro-python form) read with the current reader schema."""
        writer, record = self._read(value, None)
        return writer.event_type, record

    def _read(self, value: bytes | None, headers: Headers | None) -> tuple[_Writer, Any]:
        if value is None:
            raise UndecodableRecord("record has no value (None)")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise UndecodableRecord(f"record value is {type(value).__name__}, not bytes")
        value = bytes(value)
        if len(value) < _PREFIX_LEN:
            raise UndecodableRecord(
                f"record too short: {len(value)} bytes, need at least {_PREFIX_LEN}"
            )
        if value[:2] != MAGIC:
            raise UndecodableRecord(f"bad magic {value[:2]!r}, expected {MAGIC!r}")
        fp = value[2:_PREFIX_LEN]
        writer = self._writers.get(fp)
        if writer is None:
            raise UnknownSchema(f"unknown schema fingerprint 0x{fp.hex()}")
        if headers:
            _check_header(headers, writer)
        body = io.BytesIO(value)
        body.seek(_PREFIX_LEN)
        try:
            record = schemaless_reader(body, writer.schema, writer.reader)
        except Exception as exc:  # fastavro raises many types on corrupt input; wrap all
            raise UndecodableRecord(
                f"corrupt {writer.event_type} body: {type(exc).__name__}: {exc}"
            ) from None
        trailing = len(value) - body.tell()
        if trailing:
            raise UndecodableRecord(f"{trailing} trailing bytes after the {writer.event_type} body")
        return writer, record

    # --- schemas -------------------------------------------------------------------------

    def _converters_for(self, cls: type) -> RecordConverters:
        current = self._by_class.get(cls)
        if current is None or current.converters is None:
            raise InvalidEvent(f"not a registered event class: {cls.__name__}")
        return current.converters

    def schema(self, event_type: str) -> dict[str, Any]:
        """The parsed current (reader) schema of `event_type`."""
        return self._current_for(event_type).schema

    def _current_for(self, event_type: str) -> _Current:
        current = self._current.get(event_type)
        if current is None:
            raise UnknownSchema(f"no schema for event type {event_type!r}")
        return current


def _check_header(headers: Headers, writer: _Writer) -> None:
    """A present `event_type` header must name the type the fingerprint says."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, header in pairs:
        if key != EVENT_TYPE_HEADER:
            continue
        if isinstance(header, str):  # some clients hand header values over as str
            header = header.encode()
        if header != writer.header:
            raise UndecodableRecord(
                f"header event_type={header!r} disagrees with schema fingerprint of "
                f"{writer.event_type}"
            )
