"""Given an adapter call, when it answers, fails, raises or hangs, then the executor gets an
AdapterResult it can turn into events (never an exception, never a wait past the timeout)."""

from __future__ import annotations

import asyncio
import time

import pytest

from policy.model import AdapterSpec
from processors.adapters import AdapterCall, build_adapters, run_with_timeout
from processors.adapters.http import _result_fields
from processors.adapters.log import LogAdapter
from processors.execute_rules import AdapterResult, schema_result
from schemas.events import ActionSpec

CALL = AdapterCall(
    execution_id="exec-1",
    case_id="c1",
    action=ActionSpec(name="reset_password", params={"method": "email_link"}),
    spec=AdapterSpec(kind="log", post_condition="reset_sent"),
)


class Hangs:
    async def run(self, call: AdapterCall) -> AdapterResult:
        await asyncio.sleep(30)
        return AdapterResult(ok=True)


class Raises:
    async def run(self, call: AdapterCall) -> AdapterResult:
        raise ConnectionResetError("peer went away")


def test_no_answer_within_the_timeout_is_a_retriable_timeout() -> None:
    started = time.monotonic()

    result = asyncio.run(run_with_timeout(Hangs(), CALL, 0.2))

    assert time.monotonic() - started < 2
    assert (result.ok, result.timed_out, result.retriable, result.error_class) == (
        False,
        True,
        True,
        "Timeout",
    )
    assert 150 <= result.duration_ms < 2000


def test_an_escaping_exception_is_a_failure_with_its_class() -> None:
    result = asyncio.run(run_with_timeout(Raises(), CALL, 1))

    assert (result.ok, result.error_class, result.retriable) == (
        False,
        "ConnectionResetError",
        False,
    )
    assert result.message == "peer went away"


def test_the_log_adapter_reports_the_post_condition_it_was_asked_for() -> None:
    result = asyncio.run(run_with_timeout(LogAdapter(), CALL, 1))

    assert result.ok and result.result == {"logged": True, "reset_sent": True}
    assert result.duration_ms >= 0


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (
            '{"refund_id": "rf-1", "ok": true, "n": 2, "nested": {"a": 1}}',
            {"refund_id": "rf-1", "ok": True, "n": 2, "nested": '{"a": 1}'},
        ),
        ("", {}),
        ("not json", {}),
        ("[1, 2]", {}),
    ],
)
def test_http_answers_become_scalar_result_fields(text: str, fields: dict[str, object]) -> None:
    # The adapter parses; making the fields scalars is the one rule every adapter's
    # result passes through (schema_result, applied by run_with_timeout).
    assert schema_result(_result_fields(text)) == fields


def test_a_reply_nested_past_json_parsing_is_an_unencodable_failure() -> None:
    """The adapter's catch for RecursionError, by way of the parse it guards."""
    with pytest.raises(RecursionError):
        _result_fields('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_every_catalog_adapter_kind_has_an_adapter() -> None:
    kinds = AdapterSpec.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]

    assert set(build_adapters(lambda: None)) == set(kinds)  # type: ignore[arg-type,return-value]
