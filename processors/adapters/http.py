"""The `http` adapter: POST the action as JSON to the catalog's URL.

Body: {"execution_id", "case_id", "action", "params"}; header `Idempotency-Key` is the
execution id, so the downstream can recognize a repeated run. A 2xx answer is success
and its JSON object becomes the result the post-condition is read from (made fit for
the outcome event by `execute_rules.schema_result`, by way of `run_with_timeout`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp

from processors.adapters.base import AdapterCall
from processors.execute_rules import UNENCODABLE_RESULT, AdapterResult

# Statuses after which trying again (same idempotency key) may succeed.
RETRIABLE_STATUSES = frozenset({408, 425, 429})
MESSAGE_CHARS = 500


class HttpAdapter:
    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        # A provider, not a session: the session belongs to the running app's event loop.
        self._session = session

    async def run(self, call: AdapterCall) -> AdapterResult:
        if not call.spec.url:
            return AdapterResult(
                ok=False,
                error_class="AdapterMisconfigured",
                message=f"{call.action.name}: http adapter without a url",
            )
        body = {
            "execution_id": call.execution_id,
            "case_id": call.case_id,
            "action": call.action.name,
            "params": dict(call.action.params),
        }
        try:
            async with self._session().post(
                call.spec.url, json=body, headers={"Idempotency-Key": call.execution_id}
            ) as response:
                text = await response.text()
                if not 200 <= response.status < 300:
                    return AdapterResult(
                        ok=False,
                        error_class="HttpError",
                        retriable=response.status >= 500 or response.status in RETRIABLE_STATUSES,
                        message=f"HTTP {response.status}: {text[:MESSAGE_CHARS]}",
                    )
        except aiohttp.ClientError as exc:
            # Connection refused, reset, DNS…: the request may not have arrived; the
            # idempotency key makes another attempt safe.
            return AdapterResult(
                ok=False,
                error_class=type(exc).__name__,
                retriable=True,
                message=str(exc) or type(exc).__name__,
            )
        try:
            return AdapterResult(ok=True, result=_result_fields(text))
        except RecursionError:
            return AdapterResult(
                ok=False,
                error_class=UNENCODABLE_RESULT,
                message="unencodable_result: the reply nests deeper than JSON parsing allows",
            )


def _result_fields(text: str) -> dict[str, Any]:
    """The answer's top-level fields; a reply that is not a JSON object gives none."""
    try:
        answer: Any = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
