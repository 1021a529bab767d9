"""What every adapter is: one async call that runs one catalog action downstream."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Protocol

from policy.model import AdapterSpec
from processors.execute_rules import AdapterResult, carried
from schemas.events import ActionSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterCall:
    """One run of one action; `execution_id` is the idempotency key downstream."""

    execution_id: str
    case_id: str
    action: ActionSpec
    spec: AdapterSpec


class Adapter(Protocol):
    async def run(self, call: AdapterCall) -> AdapterResult:
        """Run the action once; report failures in the result rather than raising."""
        ...


async def run_with_timeout(adapter: Adapter, call: AdapterCall, timeout_s: float) -> AdapterResult:
    """Run `call` under the action's timeout, always returning a result, and one the
    outcome event can carry (`execute_rules.carried`).

    No answer in time -> a (retriable) timeout result; the call is cancelled. An
    exception the adapter let escape becomes a failed result with its class and message,
    not retriable, since nobody knows whether running it again is safe.
    """
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(adapter.run(call), timeout_s)
    except TimeoutError:
        return AdapterResult.timeout(timeout_s, _ms_since(started))
    except Exception as exc:  # an adapter bug must become an ExecutionFailed, not a crash
        return carried(
            AdapterResult(
                ok=False,
                error_class=type(exc).__name__,
                retriable=False,
                message=str(exc) or type(exc).__name__,
                duration_ms=_ms_since(started),
            )
        )
    return carried(replace(result, duration_ms=_ms_since(started)))


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
