"""Event dataclasses <-> Avro-python dicts, one precomputed converter pair per schema.

Converters are built once from the parsed reader schema, so the hot path does no schema
walking. `to_avro` also checks the types fastavro would otherwise coerce silently
(float into long, anything into boolean, ints beyond 32/64 bits, naive datetimes);
types fastavro already rejects (string, bytes, map keys) are left to it.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

from schemas.codec_errors import InvalidEvent, SchemaFileError
from schemas.events import VALUE_TYPES, Event
from schemas.registry import PRIMITIVES

Convert = Callable[[Any], Any]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_SCALAR_BRANCHES = frozenset({"boolean", "long", "double", "string"})
_PLAIN_SCALARS = frozenset({str, float, bool, type(None)})  # ints need a range check


class _BadValue(Exception):
    """A value did not fit; `path` collects field names innermost first as it unwinds."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _fail(expected: str, value: Any) -> NoReturn:
    raise _BadValue(f"expected {expected}, got {type(value).__name__} {value!r:.80}")


@dataclasses.dataclass(frozen=True, slots=True)
class RecordConverters:
    to_avro: Callable[[Event], dict[str, Any]]  # raises InvalidEvent naming the field
    from_avro: Callable[[dict[str, Any]], Event]  # expects a dict read with the reader schema


def build_converters(cls: type[Event], parsed: dict[str, Any]) -> RecordConverters:
    """Converters between `cls` and records of `parsed` (its fastavro-parsed schema)."""
    named: dict[str, Any] = parsed.get("__named_schemas", {})
    types = {**VALUE_TYPES, parsed["name"]: cls}
    to_avro = _to_record(parsed, named, types)
    from_avro = _from_record(parsed, named, types)
    event_type = cls.event_type

    def event_to_avro(event: Event) -> dict[str, Any]:
        try:
            result: dict[str, Any] = to_avro(event)
        except _BadValue as bad:
            raise InvalidEvent(f"{_where(event_type, bad.path)}: {bad.message}") from None
        return result

    return RecordConverters(to_avro=event_to_avro, from_avro=from_avro)


def _where(event_type: str, path: list[str]) -> str:
    """'Event.field[0].inner' from a path collected innermost first."""
    return event_type + "".join(
        part if part.startswith("[") else f".{part}" for part in reversed(path)
    )


# --- dataclass -> dict (with the checks fastavro does not make) -------------------------


def _to_avro(node: Any, named: dict[str, Any], types: dict[str, type]) -> Convert | None:
    """Converter for one schema node; None means the value passes through unchanged."""
    if isinstance(node, str):
        if node in named:
            return _to_avro(named[node], named, types)
        return _PRIMITIVE_CHECKS.get(node)
    if isinstance(node, list):
        return _to_union(node, named, types)
    kind = node["type"]
    if kind == "record":
        return _to_record(node, named, types)
    if kind == "array":
        return _to_array(_to_avro(node["items"], named, types))
    if kind == "map":
        return _to_map(_to_avro(node["values"], named, types))
    if node.get("logicalType") == "timestamp-millis":
        return _check_timestamp
    return _to_avro(kind, named, types)


def _to_record(node: dict[str, Any], named: dict[str, Any], types: dict[str, type]) -> Convert:
    cls = _class_for(node, types)
    names = tuple(f["name"] for f in node["fields"])
    _check_fields_match(cls, names, node["name"])
    getter = operator.attrgetter(*names) if len(names) > 1 else _single_getter(names[0])
    converts = [(f["name"], c) for f in node["fields"] if (c := _to_avro(f["type"], named, types))]

    def convert(value: Any) -> dict[str, Any]:
        if type(value) is not cls:
            _fail(cls.__name__, value)
        out = dict(zip(names, getter(value), strict=True))
        for name, field_convert in converts:
            try:
                out[name] = field_convert(out[name])
            except _BadValue as bad:
                bad.path.append(name)
                raise
        return out

    return convert


def _to_array(item: Convert | None) -> Convert:
    def convert(value: Any) -> Any:
        # A str or dict would be written as its characters or keys: refuse it.
        if not isinstance(value, list | tuple):
            _fail("list or tuple", value)
        if item is None:
            return value
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except _BadValue as bad:
                bad.path.append(f"[{index}]")
                raise
        return out

    return convert


def _to_map(values: Convert | None) -> Convert:
    if values is _check_scalar:
        return _to_scalar_map

    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            _fail("dict", value)
        if values is None:
            return value
        out = {}
        for key, element in value.items():
            try:
                out[key] = values(element)
            except _BadValue as bad:
                bad.path.append(f"[{key!r}]")
                raise
        return out

    return convert


def _to_scalar_map(value: Any) -> Any:
    """Check a map of scalars in place: the common case costs one type() per entry."""
    if not isinstance(value, dict):
        _fail("dict", value)
    for key, element in value.items():
        if type(element) not in _PLAIN_SCALARS:
            try:
                _check_scalar(element)
            except _BadValue as bad:
                bad.path.append(f"[{key!r}]")
                raise
    return value


def _to_union(branches: list[Any], named: dict[str, Any], types: dict[str, type]) -> Convert | None:
    others = [b for b in branches if b != "null"]
    nullable = len(others) < len(branches)
    primitive = all(isinstance(b, str) and b in PRIMITIVES for b in others)
    if primitive and set(others) == _SCALAR_BRANCHES:
        # fastavro would write an int beyond 64 bits as a double: refuse it instead.
        return _check_scalar if nullable else _fail_on_none(_check_scalar)
    if primitive:
        return None  # fastavro matches primitive union branches strictly by type
    if len(others) == 1:
        inner = _to_avro(others[0], named, types)
        if inner is None:
            return None
        return (lambda v: None if v is None else inner(v)) if nullable else inner
    raise SchemaFileError(f"unsupported union {branches!r}: one non-null branch or scalars only")


# --- dict -> dataclass ------------------------------------------------------------------


def _from_avro(node: Any, named: dict[str, Any], types: dict[str, type]) -> Convert | None:
    if isinstance(node, str):
        return _from_avro(named[node], named, types) if node in named else None
    if isinstance(node, list):
        others = [b for b in node if b != "null"]
        inners = [c for b in others if (c := _from_avro(b, named, types))]
        if not inners:
            return None
        if len(others) > 1:
            raise SchemaFileError(f"unsupported union {node!r}: records must be alone")
        inner = inners[0]
        return lambda v: None if v is None else inner(v)
    kind = node["type"]
    if kind == "record":
        return _from_record(node, named, types)
    if kind == "array":
        item = _from_avro(node["items"], named, types)
        # Events hold tuples so they stay immutable.
        return tuple if item is None else (lambda v: tuple(map(item, v)))
    if kind == "map":
        value = _from_avro(node["values"], named, types)
        return None if value is None else (lambda v: {k: value(x) for k, x in v.items()})
    return None if kind in PRIMITIVES else _from_avro(kind, named, types)


def _from_record(node: dict[str, Any], named: dict[str, Any], types: dict[str, type]) -> Convert:
    cls = _class_for(node, types)
    converts = [
        (f["name"], c) for f in node["fields"] if (c := _from_avro(f["type"], named, types))
    ]

    def convert(record: dict[str, Any]) -> Any:
        for name, field_convert in converts:
            record[name] = field_convert(record[name])
        return cls(**record)

    return convert


# --- checks -----------------------------------------------------------------------------


def _single_getter(name: str) -> Callable[[Any], tuple[Any]]:
    return lambda obj: (getattr(obj, name),)


def _class_for(node: dict[str, Any], types: dict[str, type]) -> type:
    cls = types.get(node["name"])
    if cls is None:
        raise SchemaFileError(f"no dataclass for record {node['name']}")
    return cls


def _check_fields_match(cls: type, names: tuple[str, ...], record: str) -> None:
    """Fail at load time, not on the first event, when schema and dataclass drift apart."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = [n for n in names if n not in fields]
    unfilled = [
        n
        for n, f in fields.items()
        if n not in names
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if extra or unfilled:
        raise SchemaFileError(
            f"{record} vs {cls.__name__}: schema-only fields {extra}, "
            f"required dataclass fields missing from schema {unfilled}"
        )


def _int_check(bounds: tuple[int, int], name: str) -> Convert:
    low, high = bounds

    def check(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        _fail(name, value)

    return check


def _check_boolean(value: Any) -> Any:
    if value is True or value is False:
        return value
    _fail("bool", value)


def _check_double(value: Any) -> Any:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return value
    _fail("float", value)


def _check_null(value: Any) -> Any:
    if value is None:
        return value
    _fail("None", value)


def _check_timestamp(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    _fail("timezone-aware datetime", value)


def _check_scalar(value: Any) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is float or kind is bool:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if _INT64[0] <= value <= _INT64[1]:
            return value
        _fail("int within 64 bits", value)
    if isinstance(value, str | float):  # subclasses such as StrEnum
        return value
    _fail("None, bool, int, float or str", value)


def _fail_on_none(check: Convert) -> Convert:
    def convert(value: Any) -> Any:
        if value is None:
            _fail("a value", value)
        return check(value)

    return convert


_PRIMITIVE_CHECKS: dict[str, Convert] = {
    "null": _check_null,
    "boolean": _check_boolean,
    "int": _int_check(_INT32, "int within 32 bits"),
    "long": _int_check(_INT64, "int within 64 bits"),
    "float": _check_double,
    "double": _check_double,
}
