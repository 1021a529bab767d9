"""Strict, schema-driven checking of dict records, with errors that name the field.

Used off the hot path: `Codec.encode_record` (Avro-python form: datetimes, bytes) and
`jsonform.from_json` (JSON form: ISO 8601 strings, base64 strings). Missing fields take
the schema default when there is one, so records written before a field was added stay
valid; unknown fields are refused.
"""

from __future__ import annotations

import base64
import binascii
import copy
from datetime import UTC, datetime
from enum import Enum
from typing import Any, NoReturn

from schemas.codec_errors import InvalidEvent

_INT_BOUNDS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class Form(Enum):
    AVRO = "avro"  # timestamps as aware datetimes, bytes as bytes
    JSON = "json"  # timestamps as ISO 8601 strings, bytes as base64 strings


class _Mismatch(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def conform_record(schema: dict[str, Any], record: Any, form: Form) -> dict[str, Any]:
    """`record` checked against the parsed record `schema`, in Avro-python form.

    Raises InvalidEvent("Type.field: what was wrong").
    """
    walker = _Walker(schema.get("__named_schemas", {}), form)
    event_type = schema["name"].rpartition(".")[2]
    try:
        result: dict[str, Any] = walker.value(schema, record, event_type)
    except _Mismatch as bad:
        raise InvalidEvent(f"{bad.path}: {bad.message}") from None
    return result


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 with an offset (or Z) -> UTC datetime truncated to milliseconds."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    parsed = parsed.astimezone(UTC)
    # Avro keeps milliseconds; truncate here so JSON -> event -> Avro is stable.
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


class _Walker:
    def __init__(self, named: dict[str, Any], form: Form) -> None:
        self._named = named
        self._json = form is Form.JSON

    def value(self, node: Any, value: Any, path: str) -> Any:
        if isinstance(node, str):
            if node in self._named:
                return self.value(self._named[node], value, path)
            return self._primitive(node, value, path)
        if isinstance(node, list):
            return self._union(node, value, path)
        kind = node["type"]
        if kind == "record":
            return self._record(node, value, path)
        if kind == "array":
            if not isinstance(value, list | tuple):
                _fail(path, "an array", value)
            return [self.value(node["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                _fail(path, "an object/dict", value)
            for key in value:
                if not isinstance(key, str):
                    _fail(path, "string keys", key)
            return {k: self.value(node["values"], v, f"{path}[{k!r}]") for k, v in value.items()}
        if node.get("logicalType") == "timestamp-millis":
            return self._timestamp(value, path)
        return self.value(kind, value, path)

    def _record(self, node: dict[str, Any], value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            _fail(path, "an object/dict", value)
        names = {f["name"] for f in node["fields"]}
        extra = sorted(str(k) for k in value if k not in names)
        if extra:
            raise _Mismatch(f"{path}.{extra[0]}", "unexpected field")
        out = {}
        for field in node["fields"]:
            name = field["name"]
            if name in value:
                out[name] = self.value(field["type"], value[name], f"{path}.{name}")
            elif "default" in field:
                # Copy: a shared {} or [] default would be aliased across events.
                out[name] = copy.deepcopy(field["default"])
            else:
                raise _Mismatch(f"{path}.{name}", "missing field")
        return out

    def _union(self, branches: list[Any], value: Any, path: str) -> Any:
        for branch in branches:
            try:
                return self.value(branch, value, path)
            except _Mismatch as bad:
                if bad.path != path:  # it matched the branch and failed deeper: report that
                    raise
        _fail(path, f"one of {[_branch_name(b) for b in branches]}", value)

    def _primitive(self, kind: str, value: Any, path: str) -> Any:
        if kind == "null":
            if value is None:
                return None
        elif kind == "string":
            if isinstance(value, str):
                return value
        elif kind == "boolean":
            if value is True or value is False:
                return value
        elif kind in _INT_BOUNDS:
            low, high = _INT_BOUNDS[kind]
            if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
                return value
        elif kind in ("double", "float"):
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        elif kind == "bytes":
            return self._bytes(value, path)
        _fail(path, _EXPECTED.get(kind, kind), value)

    def _bytes(self, value: Any, path: str) -> bytes:
        if not self._json:
            if isinstance(value, bytes | bytearray):
                return bytes(value)
            _fail(path, "bytes", value)
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                pass
        _fail(path, "a base64 string", value)

    def _timestamp(self, value: Any, path: str) -> datetime:
        if not self._json:
            if isinstance(value, datetime) and value.tzinfo is not None:
                return value
            _fail(path, "a timezone-aware datetime", value)
        if isinstance(value, str):
            try:
                return parse_timestamp(value)
            except ValueError as exc:
                raise _Mismatch(path, f"not an ISO 8601 timestamp with offset: {exc}") from None
        _fail(path, "an ISO 8601 timestamp string", value)


_EXPECTED = {
    "null": "null",
    "string": "a string",
    "boolean": "a boolean",
    "int": "an integer within 32 bits",
    "long": "an integer within 64 bits",
    "double": "a number",
    "float": "a number",
}


def _branch_name(branch: Any) -> str:
    if isinstance(branch, str):
        return branch
    if isinstance(branch, dict):
        return str(branch.get("logicalType") or branch.get("name") or branch["type"])
    return "union"


def _fail(path: str, expected: str, value: Any) -> NoReturn:
    raise _Mismatch(path, f"expected {expected}, got {type(value).__name__} {value!r:.80}")
