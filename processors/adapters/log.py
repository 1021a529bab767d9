"""The `log` adapter, for the demo: writes the call to the log and reports it done."""

from __future__ import annotations

import logging

from processors.adapters.base import AdapterCall
from processors.execute_rules import AdapterResult
from schemas.events import Scalar

log = logging.getLogger(__name__)


class LogAdapter:
    async def run(self, call: AdapterCall) -> AdapterResult:
        log.info(
            "run %s %s for case %s (idempotency key %s)",
            call.action.name,
            dict(call.action.params),
            call.case_id,
            call.execution_id,
        )
        # It plays a downstream that did what was asked, so it confirms the action's
        # post-condition field (a real adapter reads that from the system it called).
        result: dict[str, Scalar] = {"logged": True}
        if call.spec.post_condition:
            result[call.spec.post_condition] = True
        return AdapterResult(ok=True, result=result)
