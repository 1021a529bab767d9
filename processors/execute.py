"""The execute processor: ExecutionRequested -> the action runs (or is refused) -> outcome.

Each request is checked against the *current* policy (`execute_rules.authorize_execution`),
run through its catalog adapter under the action's timeout with the execution id as
idempotency key, rolled back when a reversible action misses its post-condition, and
answered with ExecutionSucceeded / ExecutionFailed (+ ExecutionRolledBack), in the same
transaction as the request's offset. A request whose outcome did not commit (the worker
died mid-batch) runs again with the same idempotency key, for the downstream to recognize.

A batch's requests run concurrently, up to `execute_concurrency` at a time, except that
one case's requests run one after another in their order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import aiohttp

from infra.settings import Settings
from policy.loader import LoadedPolicy
from policy.model import Action
from processors.adapters import Adapter, AdapterCall, build_adapters, run_with_timeout
from processors.execute_rules import (
    AdapterResult,
    authorize_execution,
    deciding_policy_refusal,
    outcome_events,
    refused_event,
    rollback_execution_id,
    rollback_request,
)
from processors.handler import Handler, Inbound, Step
from schemas.codec import Codec
from schemas.codec_errors import CodecError
from schemas.events import (
    ActionSpec,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    utc_now,
)

log = logging.getLogger(__name__)


async def run_action(
    adapters: dict[str, Adapter],
    execution_id: str,
    case_id: str,
    spec: ActionSpec,
    action: Action,
) -> AdapterResult:
    """Run `spec` through the adapter its catalog entry names, under its timeout."""
    adapter = adapters.get(action.adapter.kind)
    if adapter is None:
        return AdapterResult(
            ok=False,
            error_class="UnknownAdapter",
            message=f"no adapter of kind {action.adapter.kind!r}",
        )
    call = AdapterCall(execution_id=execution_id, case_id=case_id, action=spec, spec=action.adapter)
    return await run_with_timeout(adapter, call, action.timeout_s)


async def execute_request(
    req: ExecutionRequested,
    policy: LoadedPolicy,
    adapters: dict[str, Adapter],
    versions: Mapping[str, LoadedPolicy],
) -> list[Event]:
    """Authorize (under the policy that decided, then the one in force), run, roll back if
    needed; the events that tell what happened."""
    refusal = deciding_policy_refusal(req, versions) or authorize_execution(req, policy)
    if refusal is not None:
        return [refused_event(req, refusal, utc_now())]
    action = policy.policy.action(req.action.name)
    if action is None:  # unreachable: authorization checks the catalog
        return [refused_event(req, f"unknown_action: {req.action.name}", utc_now())]
    result = await run_action(adapters, req.execution_id, req.case_id, req.action, action)
    rollback = rollback_request(req, result, action)
    rollback_result = None
    if rollback is not None:
        undo = policy.policy.action(rollback.name)  # the policy guarantees it exists
        rollback_result = (
            await run_action(adapters, rollback_execution_id(req), req.case_id, rollback, undo)
            if undo is not None
            else AdapterResult(
                ok=False,
                error_class="UnknownAction",
                message=f"rollback action {rollback.name} not in the catalog",
            )
        )
    return outcome_events(req, result, action, utc_now(), rollback_result)


class Execute(Handler):
    component = "execute"
    inputs = {
        # Its own answers share the topic; only requests are acted on.
        "executions": (ExecutionRequested, ExecutionSucceeded, ExecutionFailed, ExecutionRolledBack)
    }
    stores: tuple[str, ...] = ()
    needs_policy = True

    def __init__(self, settings: Settings) -> None:
        # The adapters are async (aiohttp); the loop that runs them lives as long as we do.
        self._aio = asyncio.new_event_loop()
        self._session: aiohttp.ClientSession | None = None
        self._adapters = build_adapters(self._http)
        self._limit = settings.execute_concurrency

    def handle(self, batch: Sequence[Inbound], step: Step) -> None:
        requests = [(r, r.event) for r in batch if isinstance(r.event, ExecutionRequested)]
        if not requests:
            return
        if step.policy is None:  # unreachable: the loop waits for a policy
            raise RuntimeError("execute stepped without a policy")
        outcomes = self._aio.run_until_complete(self._run_all(requests, step.policy, step.policies))
        for (record, _), events in zip(requests, outcomes, strict=True):
            try:
                step.out.emit(events, record)
            except CodecError as exc:
                step.out.reject(record, exc, record.event.case_id)

    def close(self) -> None:
        if self._session is not None:
            self._aio.run_until_complete(self._session.close())
        self._aio.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _run_all(
        self,
        requests: list[tuple[Inbound, ExecutionRequested]],
        policy: LoadedPolicy,
        versions: Mapping[str, LoadedPolicy],
    ) -> list[list[Event]]:
        gate = asyncio.Semaphore(self._limit)
        by_case: dict[str, list[int]] = {}
        for i, (_, req) in enumerate(requests):
            by_case.setdefault(req.case_id, []).append(i)
        results: list[list[Event]] = [[] for _ in requests]

        async def one_case(indexes: list[int]) -> None:
            for i in indexes:
                async with gate:
                    results[i] = await execute_request(
                        requests[i][1], policy, self._adapters, versions
                    )

        await asyncio.gather(*(one_case(ix) for ix in by_case.values()))
        return results


def build(settings: Settings, codec: Codec) -> Execute:
    return Execute(settings)
