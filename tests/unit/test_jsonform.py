"""The documented JSON form: exact round trips, ISO timestamps, errors naming the field."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import jsonform
from schemas.codec import InvalidEvent
from schemas.events import (
    EVENT_TYPES,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    DeadLettered,
    Event,
)
from schemas.registry import BUNDLED_DIR
from tests.samples import sample_events

SAMPLES = {e.event_type: e for e in sample_events()}
ISO_MILLIS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.mark.parametrize("event", list(SAMPLES.values()), ids=lambda e: e.event_type)
def test_every_event_round_trips_through_the_json_form(event: Event) -> None:
    obj = jsonform.to_json(event)

    decoded = jsonform.from_json(obj)

    assert type(decoded) is type(event)
    assert repr(decoded) == repr(event)
    assert repr(jsonform.loads(jsonform.dumps(event))) == repr(event)


@pytest.mark.parametrize("event", list(SAMPLES.values()), ids=lambda e: e.event_type)
def test_json_form_has_event_type_first_then_the_schema_fields(event: Event) -> None:
    obj = jsonform.to_json(event)

    assert list(obj) == ["event_type", *(f.name for f in dataclasses.fields(event))]
    assert obj["event_type"] == event.event_type


def test_timestamps_are_iso_8601_utc_with_milliseconds() -> None:
    obj = jsonform.to_json(SAMPLES["GuardrailDecided"])

    assert obj["occurred_at"] == "2026-01-05T10:00:03.123Z"
    assert ISO_MILLIS_UTC.match(obj["expires_at"])


def test_bytes_are_base64_strings() -> None:
    obj = jsonform.to_json(SAMPLES["DeadLettered"])

    assert obj["key"] == "Y2FzZS0wMDAx"  # b"case-0001"
    assert obj["headers"]["trace"] == "AAE="


def test_offsets_are_accepted_and_normalised_to_utc() -> None:
    obj = {
        **jsonform.to_json(SAMPLES["CaseReopened"]),
        "occurred_at": "2026-01-05T12:00:00.5+02:00",
    }

    event = jsonform.from_json(obj)

    assert event.occurred_at == datetime(2026, 1, 5, 10, 0, 0, 500000, tzinfo=UTC)
    assert jsonform.to_json(event)["occurred_at"] == "2026-01-05T10:00:00.500Z"


def test_sub_millisecond_input_is_truncated_like_avro() -> None:
    obj = {
        **jsonform.to_json(SAMPLES["CaseReopened"]),
        "occurred_at": "2026-01-05T10:00:00.123999Z",
    }

    assert jsonform.from_json(obj).occurred_at.microsecond == 123000


def test_fields_with_defaults_may_be_omitted() -> None:
    obj = jsonform.to_json(SAMPLES["CaseUpdated"])
    del obj["note"]

    event = jsonform.from_json(obj)

    assert isinstance(event, CaseUpdated)
    assert event.note is None


def test_omitted_params_default_to_a_fresh_empty_map() -> None:
    obj = jsonform.to_json(SAMPLES["CaseResolved"])
    for action in obj["actions_taken"]:
        action.pop("params")

    event = jsonform.from_json(obj)
    assert isinstance(event, CaseResolved)
    first, second = event.actions_taken[:2]

    assert first.params == {} and second.params == {}
    assert first.params is not second.params


def _with(sample: str, /, **changes: Any) -> dict[str, Any]:
    return {**jsonform.to_json(SAMPLES[sample]), **changes}


def _without(event_type: str, field: str) -> dict[str, Any]:
    obj = jsonform.to_json(SAMPLES[event_type])
    del obj[field]
    return obj


BAD_OBJECTS = {
    "not-an-object": (["CaseReopened"], "must be a JSON object"),
    "no-event-type": (_without("CaseReopened", "event_type"), "'event_type'"),
    "event-type-not-string": (_with("CaseReopened", event_type=7), "'event_type'"),
    "unknown-event-type": (_with("CaseReopened", event_type="CaseVanished"), "'CaseVanished'"),
    "missing-field": (_without("CaseReopened", "reason"), "CaseReopened.reason: missing field"),
    "extra-field": (_with("CaseReopened", colour="red"), "CaseReopened.colour: unexpected"),
    "wrong-type": (_with("CaseReopened", reason=42), "CaseReopened.reason: expected a string"),
    "null-required": (_with("CaseReopened", case_id=None), "CaseReopened.case_id: expected"),
    "naive-timestamp": (
        _with("CaseReopened", occurred_at="2026-01-05T10:00:00"),
        "CaseReopened.occurred_at: not an ISO 8601 timestamp with offset",
    ),
    "timestamp-as-number": (
        _with("CaseReopened", occurred_at=1767607200123),
        "CaseReopened.occurred_at: expected an ISO 8601 timestamp string",
    ),
    "int-out-of-range": (
        _with("ApprovalExpired", approvals_received=2**31),
        "ApprovalExpired.approvals_received: expected an integer within 32 bits",
    ),
    "bool-for-int": (
        _with("ReviewRecorded", approvals_required=True),
        "ReviewRecorded.approvals_required: expected an integer",
    ),
    "bad-base64": (_with("DeadLettered", raw="not base64!"), "DeadLettered.raw: expected a base64"),
    "nested-missing": (
        _with("ExecutionRequested", action={"params": {}}),
        "ExecutionRequested.action.name: missing field",
    ),
    "nested-scalar": (
        _with("ExecutionRequested", action={"name": "refund", "params": {"amount": [1]}}),
        "ExecutionRequested.action.params['amount']: expected one of",
    ),
    "array-item": (
        _with("ReviewRecorded", roles=["lead", 3]),
        "ReviewRecorded.roles[1]: expected a string",
    ),
    "array-as-string": (
        _with("ReviewRecorded", roles="lead"),
        "ReviewRecorded.roles: expected an array",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OBJECTS))
def test_invalid_objects_raise_errors_naming_the_field(case: str) -> None:
    obj, message = BAD_OBJECTS[case]

    with pytest.raises(InvalidEvent) as caught:
        jsonform.from_json(obj)

    assert message in caught.value.reason


def test_loads_refuses_invalid_json() -> None:
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        jsonform.loads(b'{"event_type": "CaseReopened",')


def test_loads_accepts_str_lines_with_newline() -> None:
    line = jsonform.dumps(SAMPLES["CaseReopened"]).decode() + "\n"

    assert jsonform.loads(line) == SAMPLES["CaseReopened"]


def test_readme_examples_are_valid_upstream_events() -> None:
    readme = (BUNDLED_DIR / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith('{"event_type"')]

    events = [jsonform.loads(line) for line in lines]

    assert sorted(e.event_type for e in events) == sorted(
        t for t, cls in EVENT_TYPES.items() if cls.topic == "cases"
    )
    assert isinstance(events[-1], CaseReopened)


def test_dead_letter_key_may_be_null() -> None:
    event = jsonform.from_json(_with("DeadLettered", key=None))

    assert isinstance(event, DeadLettered)
    assert event.key is None


def test_the_fast_serialiser_writes_exactly_the_json_form() -> None:
    import orjson

    from schemas.jsonform import dumps, to_json
    from tests.samples import sample_events

    for event in sample_events():
        assert dumps(event) == orjson.dumps(to_json(event)), event.event_type
