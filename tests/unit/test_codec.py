"""Wire format, corrupt input, unknown schemas, header checks and schema evolution."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import shutil
import struct
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import (
    EVENT_TYPE_HEADER,
    Codec,
    CodecError,
    InvalidEvent,
    UndecodableRecord,
    UnknownSchema,
)
from schemas.events import EVENT_TYPES, ActionSpec, CaseReopened, CaseUpdated, Event
from schemas.registry import BUNDLED_DIR, HISTORY_DIR, load_schema_set, read_history_schema
from tests.samples import sample_events

SAMPLES = {e.event_type: e for e in sample_events()}
MARKER = b"\xc3\x01"


@functools.cache
def _codec() -> Codec:
    return Codec.load()


@pytest.fixture
def codec() -> Codec:
    return _codec()


@pytest.fixture
def reopened(codec: Codec) -> bytes:
    return codec.encode(SAMPLES["CaseReopened"])[0]


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO straight from the Avro spec, to check the codec independently."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


# --- layout -----------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_single_object_layout(event_type: str, codec: Codec) -> None:
    event = SAMPLES[event_type]
    schema = codec.schema(event_type)
    canonical = to_parsing_canonical_form(schema)

    value, headers = codec.encode(event)

    assert value[:2] == MARKER
    assert value[2:10] == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    assert value[2:10] == struct.pack("<Q", _crc64_avro(canonical.encode()))
    body = io.BytesIO()
    schemaless_writer(body, schema, codec.to_record(event))
    assert value[10:] == body.getvalue()
    assert headers == [(EVENT_TYPE_HEADER, event_type.encode())]
    assert codec.fingerprints[value[2:10]] == event_type


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_fingerprinted_form_is_self_contained(event_type: str, codec: Codec) -> None:
    """Shared types are inlined, so any Avro reader can rebuild the writer schema."""
    canonical = to_parsing_canonical_form(codec.schema(event_type))

    parse_schema(json.loads(canonical), named_schemas={})  # raises on a dangling reference

    assert "logicalType" not in canonical


# --- corrupt input ----------------------------------------------------------------------


def _corrupt_cases(valid: bytes) -> dict[str, tuple[bytes | None, str]]:
    return {
        "none": (None, "no value"),
        "empty": (b"", "record too short: 0 bytes"),
        "one-byte": (b"\xc3", "record too short: 1 bytes"),
        "prefix-only-short": (valid[:9], "record too short: 9 bytes"),
        "bad-marker": (b"\x00\x01" + valid[2:], "bad magic b'\\x00\\x01'"),
        "truncated-body": (valid[:-1], "corrupt CaseReopened body"),
        "no-body": (valid[:10], "corrupt CaseReopened body"),
        "trailing-garbage": (valid + b"\x00junk", "5 trailing bytes"),
        "bad-utf8": (valid[:10] + b"\x02\xff" + valid[12:], "corrupt CaseReopened body"),
        "random": (bytes(range(7, 47)), "bad magic"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "none",
        "empty",
        "one-byte",
        "prefix-only-short",
        "bad-marker",
        "truncated-body",
        "no-body",
        "trailing-garbage",
        "bad-utf8",
        "random",
    ],
)
def test_corrupt_input_is_undecodable(case: str, codec: Codec, reopened: bytes) -> None:
    value, message = _corrupt_cases(reopened)[case]

    with pytest.raises(UndecodableRecord) as caught:
        codec.decode(value)

    assert message in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_unknown_fingerprint_is_unknown_schema(codec: Codec, reopened: bytes) -> None:
    value = MARKER + b"\x01\x02\x03\x04\x05\x06\x07\x08" + reopened[10:]

    with pytest.raises(UnknownSchema, match="unknown schema fingerprint 0x0102030405060708"):
        codec.decode(value)


@pytest.mark.parametrize(
    "headers",
    [
        [("trace", b"x"), (EVENT_TYPE_HEADER, b"CaseOpened")],
        [(EVENT_TYPE_HEADER, None)],
        {EVENT_TYPE_HEADER: b"CaseOpened"},
    ],
    ids=["other-type", "empty-value", "mapping"],
)
def test_header_naming_another_type_is_undecodable(
    headers: Any, codec: Codec, reopened: bytes
) -> None:
    with pytest.raises(UndecodableRecord, match="disagrees with schema fingerprint"):
        codec.decode(reopened, headers)


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("trace", b"x")],
        [(EVENT_TYPE_HEADER, b"CaseReopened")],
        [(EVENT_TYPE_HEADER, "CaseReopened")],
        {EVENT_TYPE_HEADER: b"CaseReopened"},
    ],
    ids=["none", "empty", "other-header", "matching", "matching-str", "mapping"],
)
def test_absent_or_matching_header_decodes(headers: Any, codec: Codec, reopened: bytes) -> None:
    assert codec.decode(reopened, headers) == SAMPLES["CaseReopened"]


# --- encoding errors --------------------------------------------------------------------


def _broken(event_type: str, **changes: Any) -> Any:
    """A sample with deliberately ill-typed values (hence Any: mypy would refuse them)."""
    sample: Any = SAMPLES[event_type]
    return dataclasses.replace(sample, **changes)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (_broken("CaseReopened", reason=5), "reason"),
        (_broken("CaseReopened", occurred_at=datetime(2026, 1, 1)), "occurred_at"),
        (_broken("ApprovalExpired", approvals_received=1.5), "approvals_received"),
        (_broken("ApprovalExpired", approvals_received=2**31), "approvals_received"),
        (_broken("ExecutionFailed", retriable=1), "retriable"),
        (_broken("ExecutionFailed", duration_ms=True), "duration_ms"),
        (_broken("ReviewRecorded", roles="team_lead"), "roles"),
        (
            _broken("GuardrailDecided", action=ActionSpec(name="a", params={"x": [1]})),  # type: ignore[dict-item]
            "action.params['x']",
        ),
        (_broken("GuardrailDecided", action={"name": "a"}), "action"),
        (_broken("CaseOpened", attributes={"big": 2**64}), "attributes['big']"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_encode_refuses_values_that_break_the_schema(
    event: Event, field: str, codec: Codec
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        codec.encode(event)

    # Our own checks give the full path; fastavro's (strings, bytes) name the leaf field.
    reason = caught.value.reason
    assert reason.startswith(f"{event.event_type}.{field}: expected ") or (
        reason.startswith(f"{event.event_type}: ") and f"field {field}" in reason
    ), reason


def test_encode_refuses_unregistered_classes(codec: Codec) -> None:
    with pytest.raises(InvalidEvent, match="not a registered event class"):
        codec.encode(ActionSpec(name="x"))  # type: ignore[arg-type]


# --- records ----------------------------------------------------------------------------


def test_encode_record_and_decode_record_round_trip(codec: Codec) -> None:
    record = codec.to_record(SAMPLES["RecommendationProduced"])

    value = codec.encode_record("RecommendationProduced", record)

    assert value == codec.encode(SAMPLES["RecommendationProduced"])[0]
    event_type, decoded = codec.decode_record(value)
    assert event_type == "RecommendationProduced"
    assert decoded["provenance"]["model"] == "gpt-4o-mini"
    assert decoded["occurred_at"] == SAMPLES["RecommendationProduced"].occurred_at


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reason": None}, "CaseReopened.reason: expected a string"),
        ({"extra": 1}, "CaseReopened.extra: unexpected field"),
        ({"occurred_at": 1767607200123}, "CaseReopened.occurred_at: expected a timezone-aware"),
    ],
)
def test_encode_record_names_the_bad_field(
    change: dict[str, Any], message: str, codec: Codec
) -> None:
    record = {**codec.to_record(SAMPLES["CaseReopened"]), **change}

    with pytest.raises(InvalidEvent) as caught:
        codec.encode_record("CaseReopened", record)

    assert message in caught.value.reason


def test_encode_record_names_a_missing_field(codec: Codec) -> None:
    record = codec.to_record(SAMPLES["CaseReopened"])
    del record["reason"]

    with pytest.raises(InvalidEvent, match=r"CaseReopened\.reason: missing field"):
        codec.encode_record("CaseReopened", record)


def test_unknown_event_type_has_no_schema(codec: Codec) -> None:
    with pytest.raises(UnknownSchema, match="'CaseVanished'"):
        codec.schema("CaseVanished")
    with pytest.raises(UnknownSchema):
        codec.encode_record("CaseVanished", {})


# --- evolution --------------------------------------------------------------------------


def _without_field(event_type: str, field: str) -> dict[str, Any]:
    raw = json.loads((BUNDLED_DIR / f"{event_type}.avsc").read_text())
    raw["fields"] = [f for f in raw["fields"] if f["name"] != field]
    return raw


def test_old_writer_is_read_with_the_new_reader_and_defaults_filled(tmp_path: Path) -> None:
    # Given a producer still on v1 of CaseUpdated, before `note` was added.
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    v1 = _without_field("CaseUpdated", "note")
    (old_dir / "CaseUpdated.avsc").write_text(json.dumps(v1))
    old_producer = Codec.load(old_dir)
    sample = SAMPLES["CaseUpdated"]
    record = {k: v for k, v in Codec.load().to_record(sample).items() if k != "note"}
    value = old_producer.encode_record("CaseUpdated", record)
    # ... and a reader that keeps v1 in its history.
    history = tmp_path / "history"
    history.mkdir()
    (history / "CaseUpdated.v1.avsc").write_text(json.dumps(v1))

    decoded = Codec.load(BUNDLED_DIR, history).decode(value, [(EVENT_TYPE_HEADER, b"CaseUpdated")])

    assert isinstance(sample, CaseUpdated)
    assert decoded == dataclasses.replace(sample, note=None)
    # Without the history file the old fingerprint is unknown: dead-letter, not a crash.
    with pytest.raises(UnknownSchema):
        Codec.load(BUNDLED_DIR, tmp_path / "empty").decode(value)


def _as_written_by(value: Any, schema: Any) -> Any:
    """`value` as a writer on `schema` (an older one) sends it: every dataclass field the
    schema does not name back to its default, in nested records too."""
    if isinstance(schema, list):  # a union: the branch that is a record, if any
        records = [s for s in schema if isinstance(s, dict) and s.get("type") == "record"]
        return _as_written_by(value, records[0]) if records and value is not None else value
    if isinstance(schema, dict) and schema.get("type") == "array":
        return tuple(_as_written_by(v, schema["items"]) for v in value)
    if not (isinstance(schema, dict) and schema.get("type") == "record"):
        return value
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    named = {f["name"]: f["type"] for f in schema["fields"]}
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        if field.name in named:
            changes[field.name] = _as_written_by(getattr(value, field.name), named[field.name])
        elif field.default is not dataclasses.MISSING:
            changes[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            changes[field.name] = field.default_factory()
    return dataclasses.replace(value, **changes)


def _assert_history_compatible(directory: Path, history: Path) -> int:
    """Every history schema reads into the current one and back; returns how many."""
    codec = Codec.load(directory, history)
    current = load_schema_set(directory).current
    checked = 0
    for path in sorted(history.glob("*.avsc")):
        event_type = path.name.split(".v")[0]
        old = read_history_schema(event_type, path)
        sample = SAMPLES[event_type]
        record = codec.to_record(sample)
        # Old producer -> current reader (what the codec does on decode).
        body = io.BytesIO()
        schemaless_writer(body, old.parsed, record)
        decoded = codec.decode(MARKER + old.fingerprint + body.getvalue())
        # What the old writer could carry: the sample without the fields (also of nested
        # records) its schema lacks, which the reader fills with their defaults.
        assert decoded == _as_written_by(sample, old.parsed), path.name
        # Current producer -> old reader (readers upgraded later still cope).
        new_body = io.BytesIO(codec.encode(sample)[0][10:])
        schemaless_reader(new_body, current[event_type].parsed, old.parsed)
        checked += 1
    return checked


def test_every_bundled_history_schema_is_readable_by_the_current_reader() -> None:
    _assert_history_compatible(BUNDLED_DIR, HISTORY_DIR)


def test_history_check_itself_catches_versions(tmp_path: Path) -> None:
    """The check above must really run when history/ has files; prove it on a copy."""
    directory = tmp_path / "schemas"
    shutil.copytree(BUNDLED_DIR, directory, ignore=shutil.ignore_patterns("*.py", "history"))
    history = directory / "history"
    history.mkdir()
    (history / "CaseUpdated.v1.avsc").write_text(json.dumps(_without_field("CaseUpdated", "note")))
    (history / "ReviewSubmitted.v1.avsc").write_text(
        json.dumps(_standalone("ReviewSubmitted"))  # a snapshot taken before any edit
    )

    assert _assert_history_compatible(directory, history) == 2


def _standalone(event_type: str) -> dict[str, Any]:
    return load_schema_set(BUNDLED_DIR).current[event_type].standalone


# --- fuzzing ----------------------------------------------------------------------------

HEADERS = st.lists(st.tuples(st.sampled_from([EVENT_TYPE_HEADER, "x"]), st.binary(max_size=20)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.binary(max_size=200), headers=HEADERS)
def test_arbitrary_bytes_raise_only_codec_errors(
    value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    codec = _codec()
    with contextlib.suppress(CodecError):
        codec.decode(value, headers)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_type=st.sampled_from(sorted(SAMPLES)),
    cut=st.integers(min_value=0, max_value=400),
    noise=st.binary(max_size=60),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=4),
)
def test_damaged_records_decode_or_raise_codec_errors(
    event_type: str, cut: int, noise: bytes, flips: list[tuple[int, int]]
) -> None:
    """Valid prefix, damaged body: either some event comes out or a CodecError."""
    codec = _codec()
    value = bytearray(codec.encode(SAMPLES[event_type])[0])
    for position, mask in flips:
        index = 10 + position % max(1, len(value) - 10)
        if index < len(value):
            value[index] ^= mask
    damaged = bytes(value[: 10 + cut]) + noise
    try:
        decoded = codec.decode(damaged)
    except CodecError:
        return
    assert isinstance(decoded, EVENT_TYPES[event_type])


def test_codec_errors_carry_a_reason() -> None:
    error = UndecodableRecord("bad magic b'\\x00'")

    assert isinstance(error, CodecError)
    assert error.reason == "bad magic b'\\x00'"


def test_decoded_timestamps_are_utc_aware(codec: Codec) -> None:
    decoded = codec.decode(codec.encode(SAMPLES["CaseReopened"])[0])

    assert isinstance(decoded, CaseReopened)
    assert decoded.occurred_at.utcoffset() == timedelta(0)
