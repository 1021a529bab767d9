"""Loading the .avsc files: shared named types, current schemas, history, fingerprints.

Layout of a schema directory:

- `_*.avsc`: shared named types (a record, or a JSON array of them), loaded first;
- `<EventType>.avsc`: the current schema of one event, record `casegate.<EventType>`;
- `history/<EventType>.v<N>.avsc`: earlier, self-contained versions kept so bytes
  written by older producers stay readable.

Each event schema is made self-contained (shared types inlined at first use) before
fingerprinting: the single-object fingerprint must cover the full writer schema, not a
bare reference such as "casegate.ActionSpec".
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.codec_errors import SchemaFileError

NAMESPACE = "casegate"
BUNDLED_DIR = Path(__file__).resolve().parent
HISTORY_DIR = BUNDLED_DIR / "history"

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
HISTORY_NAME = re.compile(r"^(?P<event_type>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """One version of one event schema, ready for fastavro."""

    event_type: str
    standalone: dict[str, Any]  # self-contained JSON, docs kept (what history/ stores)
    parsed: dict[str, Any]  # fastavro-parsed form of `standalone`
    canonical: str  # Parsing Canonical Form
    fingerprint: bytes  # CRC-64-AVRO of `canonical`, the 8 bytes after the marker
    source: Path


@dataclass(frozen=True, slots=True)
class SchemaSet:
    current: dict[str, WriterSchema]  # event_type -> the schema readers read with
    writers: dict[bytes, WriterSchema]  # fingerprint -> current and historical versions


@functools.cache
def bundled_schema_set() -> SchemaSet:
    """The schemas shipped in this package, read once on first use."""
    return load_schema_set(BUNDLED_DIR, HISTORY_DIR)


def load_schema_set(directory: Path, history: Path | None = None) -> SchemaSet:
    """Read every schema under `directory` (and `history`); raise SchemaFileError if bad."""
    library: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("_*.avsc")):
        _collect_named(_read_json(path), NAMESPACE, library, path)

    current: dict[str, WriterSchema] = {}
    for path in sorted(directory.glob("*.avsc")):
        if path.name.startswith("_"):
            continue
        current[path.stem] = _writer_schema(path.stem, _read_json(path), library, path)

    writers = {ws.fingerprint: ws for ws in current.values()}
    for path in sorted(history.glob("*.avsc")) if history is not None else ():
        match = HISTORY_NAME.match(path.name)
        if match is None:
            raise SchemaFileError(f"{path}: history files are named <EventType>.v<N>.avsc")
        event_type = match["event_type"]
        if event_type not in current:
            raise SchemaFileError(f"{path}: no current schema for {event_type} to read it with")
        ws = read_history_schema(event_type, path)
        writers.setdefault(ws.fingerprint, ws)
    return SchemaSet(current=current, writers=writers)


def read_history_schema(event_type: str, path: Path) -> WriterSchema:
    """One history file; it must be self-contained."""
    # No shared library: an old version must not silently pick up today's types.
    return _writer_schema(event_type, _read_json(path), {}, path)


def fingerprint_of(canonical: str) -> bytes:
    """CRC-64-AVRO of a canonical form, as the 8 little-endian bytes on the wire."""
    # fastavro returns the hex of the little-endian bytes, so fromhex is the wire order.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def _writer_schema(
    event_type: str, raw: Any, library: dict[str, dict[str, Any]], path: Path
) -> WriterSchema:
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaFileError(f"{path}: an event schema must be a record")
    fullname = _fullname(str(raw.get("name", "")), raw.get("namespace", NAMESPACE))
    if fullname != f"{NAMESPACE}.{event_type}":
        raise SchemaFileError(f"{path}: record is {fullname}, expected {NAMESPACE}.{event_type}")
    standalone = _Inliner(library, path).walk(raw, NAMESPACE)
    try:
        # A fresh named-type table per schema: each must stand on its own.
        parsed: dict[str, Any] = parse_schema(standalone, named_schemas={})  # type: ignore[assignment]
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaFileError(f"{path}: {type(exc).__name__}: {exc}") from exc
    canonical = to_parsing_canonical_form(parsed)
    return WriterSchema(
        event_type=event_type,
        standalone=standalone,
        parsed=parsed,
        canonical=canonical,
        fingerprint=fingerprint_of(canonical),
        source=path,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaFileError(f"{path}: {exc}") from exc


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _collect_named(
    node: Any, namespace: str, library: dict[str, dict[str, Any]], path: Path
) -> None:
    """Index top-level named types of a shared file by full name."""
    for item in node if isinstance(node, list) else [node]:
        if not isinstance(item, dict) or item.get("type") not in _NAMED:
            raise SchemaFileError(f"{path}: shared files hold named types only")
        ns = item.get("namespace", namespace)
        fullname = _fullname(str(item["name"]), ns)
        if fullname in library:
            raise SchemaFileError(f"{path}: {fullname} defined twice")
        # Pin the namespace so the definition resolves the same wherever it is inlined.
        library[fullname] = {**item, "namespace": fullname.rpartition(".")[0]}


class _Inliner:
    """Replace references to shared named types by their definition at first use."""

    def __init__(self, library: dict[str, dict[str, Any]], path: Path) -> None:
        self._library = library
        self._path = path
        self._defined: set[str] = set()

    def walk(self, node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            return self._reference(node, namespace)
        if isinstance(node, list):
            return [self.walk(branch, namespace) for branch in node]
        if not isinstance(node, dict):
            raise SchemaFileError(f"{self._path}: not a schema: {node!r}")
        kind = node.get("type")
        if kind in _NAMED:
            return self._definition(node, namespace)
        if kind == "array":
            return {**node, "items": self.walk(node["items"], namespace)}
        if kind == "map":
            return {**node, "values": self.walk(node["values"], namespace)}
        # {"type": "long", "logicalType": ...} or {"type": <reference>}
        return {**node, "type": self.walk(kind, namespace)}

    def _reference(self, name: str, namespace: str) -> Any:
        if name in PRIMITIVES:
            return name
        fullname = _fullname(name, namespace)
        if fullname in self._defined:
            return fullname
        definition = self._library.get(fullname)
        if definition is None:
            raise SchemaFileError(f"{self._path}: unknown type {fullname}")
        return self.walk(definition, namespace)

    def _definition(self, node: dict[str, Any], namespace: str) -> dict[str, Any]:
        fullname = _fullname(str(node["name"]), node.get("namespace", namespace))
        if fullname in self._defined:
            raise SchemaFileError(f"{self._path}: {fullname} defined twice")
        self._defined.add(fullname)
        if node["type"] not in ("record", "error"):
            return dict(node)
        inner = fullname.rpartition(".")[0]
        fields = [{**f, "type": self.walk(f["type"], inner)} for f in node["fields"]]
        return {**node, "fields": fields}
