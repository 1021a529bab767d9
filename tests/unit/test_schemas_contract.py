"""The .avsc files are the contract: each has its dataclass, and they agree exactly."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types
import typing
import uuid
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import Codec
from schemas.events import (
    EVENT_TYPES,
    VALUE_TYPES,
    Event,
    EventIdKeyMissing,
    InternalEvent,
    derived_event_id,
    install_event_id_key,
    new_event_id,
)
from schemas.registry import BUNDLED_DIR
from tests.samples import sample_events

EVENT_FILES = sorted(p for p in BUNDLED_DIR.glob("*.avsc") if not p.name.startswith("_"))
SAMPLES = sample_events()

# architecture §3 upstream contract: exactly these fields, in this order.
UPSTREAM_FIELDS = {
    "CaseOpened": [
        "event_id",
        "case_id",
        "occurred_at",
        "source",
        "channel",
        "queue",
        "team",
        "issue_class",
        "subject",
        "description",
        "priority",
        "customer",
        "attributes",
    ],
    "CaseUpdated": ["event_id", "case_id", "occurred_at", "actor", "changes", "note"],
    "CaseResolved": [
        "event_id",
        "case_id",
        "occurred_at",
        "resolved_by",
        "resolution_code",
        "category",
        "actions_taken",
    ],
    "CaseReopened": ["event_id", "case_id", "occurred_at", "reason"],
}
COMMON = ["event_id", "case_id", "occurred_at"]
CAUSAL = ["causation_id", "correlation_id"]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.load()


def _records(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every record defined in a parsed schema, by full name (the event and nested ones)."""
    named: dict[str, dict[str, Any]] = schema["__named_schemas"]
    return {name: s for name, s in named.items() if s["type"] == "record"}


def _nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _allows_none(hint: Any) -> bool:
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return is_union and type(None) in typing.get_args(hint)


def _sample_ids(event: Event) -> str:
    return event.event_type


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.stem)
def test_every_schema_file_has_its_event_class(path: Path) -> None:
    raw = json.loads(path.read_text())

    assert raw["type"] == "record"
    assert raw["namespace"] == "casegate"
    assert raw["name"] == path.stem
    assert raw.get("doc"), "records carry a doc string"
    assert EVENT_TYPES[path.stem].event_type == path.stem


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_class_has_its_schema_file(event_type: str) -> None:
    assert (BUNDLED_DIR / f"{event_type}.avsc").is_file()


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.stem)
def test_dataclass_fields_equal_avro_fields(path: Path, codec: Codec) -> None:
    """Names, order, nullability and defaults agree for the event and its nested records."""
    classes = {**VALUE_TYPES, f"casegate.{path.stem}": EVENT_TYPES[path.stem]}

    for name, record in _records(codec.schema(path.stem)).items():
        cls = classes[name]
        fields = dataclasses.fields(cls)
        hints = typing.get_type_hints(cls)
        avro = {f["name"]: f for f in record["fields"]}

        assert [f.name for f in fields] == list(avro), name
        for field in fields:
            avro_field = avro[field.name]
            where = f"{name}.{field.name}"
            assert _allows_none(hints[field.name]) == _nullable(avro_field["type"]), where
            has_default = (
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING
            )
            assert has_default == ("default" in avro_field), where
            if field.default is not dataclasses.MISSING:
                assert field.default == avro_field["default"], where
            if field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
                # An Avro array default is a JSON list; the dataclass holds it as a tuple.
                default = list(default) if isinstance(default, tuple) else default
                assert default == avro_field["default"], where


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.stem)
def test_common_fields_lead_every_event(path: Path, codec: Codec) -> None:
    fields = codec.schema(path.stem)["fields"]
    names = [f["name"] for f in fields]
    internal = issubclass(EVENT_TYPES[path.stem], InternalEvent)

    assert names[:3] == COMMON
    assert fields[2]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    if internal:
        assert names[3:5] == CAUSAL
        assert all(f["type"] == ["null", "string"] and f["default"] is None for f in fields[3:5])
    else:
        assert not set(CAUSAL) & set(names)


@pytest.mark.parametrize("event_type", sorted(UPSTREAM_FIELDS))
def test_upstream_events_have_exactly_the_contract_fields(event_type: str) -> None:
    raw = json.loads((BUNDLED_DIR / f"{event_type}.avsc").read_text())

    assert [f["name"] for f in raw["fields"]] == UPSTREAM_FIELDS[event_type]
    assert EVENT_TYPES[event_type].topic == "cases"
    assert not issubclass(EVENT_TYPES[event_type], InternalEvent)


def test_outcome_like_fields_are_strings_not_enums() -> None:
    """Avro enums cannot gain symbols compatibly; outcomes and verdicts must evolve."""
    for path in BUNDLED_DIR.glob("*.avsc"):
        assert '"enum"' not in path.read_text(), path.name


def test_samples_cover_every_event_type() -> None:
    assert sorted(e.event_type for e in SAMPLES) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=_sample_ids)
def test_sample_round_trips_exactly_through_the_codec(event: Event, codec: Codec) -> None:
    value, headers = codec.encode(event)

    decoded = codec.decode(value, headers)

    assert type(decoded) is type(event)
    assert decoded == event
    # repr also tells 1 from 1.0 and a tuple from a list, which == does not.
    assert repr(decoded) == repr(event)


def test_derived_event_id_is_deterministic_and_a_valid_uuid8() -> None:
    first = derived_event_id("cause-1", "guard")

    assert first == derived_event_id("cause-1", "guard")
    assert first != derived_event_id("cause-1", "recommend")
    assert first != derived_event_id("cause-2", "guard")
    parsed = uuid.UUID(first)
    assert parsed.version == 8
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == first


def test_derived_event_id_depends_on_the_key() -> None:
    # Given the ids one deployment derives ...
    under_test_key = derived_event_id("cause-1", "ExecutionRequested")
    # ... when another key is installed (or upstream guesses with the public uuid5 scheme)
    install_event_id_key(b"another-deployment-secret-key")
    other = derived_event_id("cause-1", "ExecutionRequested")

    # Then the ids differ: nobody without the key can compute them in advance.
    assert other != under_test_key
    old_namespace = uuid.UUID("6f1f3f5e-2b8a-4c3e-9d47-5a0c1e7b9d21")
    legacy = uuid.uuid5(old_namespace, "cause-1:ExecutionRequested")
    assert under_test_key != str(legacy) and other != str(legacy)


def test_derived_event_id_without_a_key_says_what_to_do() -> None:
    install_event_id_key(None)

    with pytest.raises(EventIdKeyMissing, match="install_event_id_key"):
        derived_event_id("cause-1", "guard")


def test_a_short_event_id_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        install_event_id_key(b"short")


def test_new_event_id_is_a_random_uuid4() -> None:
    ids = {new_event_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_importing_the_package_reads_no_files() -> None:
    """Schemas load lazily on first use, never as a side effect of an import."""
    probe = (
        "import builtins, pathlib\n"
        "def refuse(*a, **k): raise AssertionError(f'I/O at import: {a!r}')\n"
        "builtins.open = pathlib.Path.open = pathlib.Path.read_text = refuse\n"
        "import schemas.codec, schemas.jsonform, tests.samples, schemas.snapshot\n"
        "from schemas.registry import bundled_schema_set\n"
        "assert bundled_schema_set.cache_info().currsize == 0\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=BUNDLED_DIR.parent
    )

    assert result.returncode == 0, result.stderr
