"""The execute processor: ExecutionRequested -> the action runs (or is refused) -> outcome.

Each request is checked against the *current* policy (`execute_rules.authorize_execution`),
run through its catalog adapter under the action's timeout with the execution id as
idempotency key, rolled back when a reversible action misses its post-condition, and
answered with ExecutionSucceeded / ExecutionFailed (+ ExecutionRolledBack).
`finished_executions` (execution_id -> outcome) keeps a redelivered request from running
again once its outcome is on the topic; a request whose outcome was not yet durable when
the processor died runs again with the same idempotency key, for the downstream to
recognize.
"""

from __future__ import annotations

import logging

import faust

from infra.settings import Settings
from policy.loader import LoadedPolicy
from policy.model import Action
from processors.adapters import Adapter, AdapterCall, build_adapters, run_with_timeout
from processors.app import create_app, raw_topic
from processors.consume import CRASH, each_record
from processors.deadletters import DeadLetters
from processors.emitter import Emitter
from processors.execute_rules import (
    AdapterResult,
    authorize_execution,
    outcome_events,
    refused_event,
    rollback_execution_id,
    rollback_request,
)
from processors.policy_source import PolicySource
from processors.records import where
from schemas.codec import Codec
from schemas.errors import CodecError, InvalidEvent
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
COMPONENT = "execute"
OUTCOMES = (ExecutionSucceeded, ExecutionFailed, ExecutionRolledBack)


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
    req: ExecutionRequested, policy: LoadedPolicy, adapters: dict[str, Adapter]
) -> list[Event]:
    """Authorize, run, roll back if needed; the events that tell what happened."""
    refusal = authorize_execution(req, policy)
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


def build(settings: Settings, codec: Codec) -> faust.App:
    app = create_app(settings, COMPONENT)
    requests = raw_topic(app, settings, "executions")
    dead_letters = DeadLetters(app, settings, codec, COMPONENT)
    emitter = Emitter(app, settings, codec, ["executions"])
    policies = PolicySource(settings, codec, dead_letters)
    policies.attach(app)
    finished = app.Table("finished_executions", default=None, key_type=str)
    adapters = build_adapters(lambda: app.http_client)

    @app.agent(requests, supervisor_strategy=CRASH)
    async def execute(stream: faust.StreamT) -> None:
        async for msg in each_record(stream, settings):
            try:
                req = codec.decode(msg.value, msg.headers)
                if isinstance(req, OUTCOMES):
                    continue  # our own answers share the topic
                if not isinstance(req, ExecutionRequested):
                    raise InvalidEvent(
                        f"{type(req).__name__} does not belong on the executions topic"
                    )
                if req.execution_id in finished:
                    log.info(
                        "%s: execution %s already finished (%s)",
                        where(msg),
                        req.execution_id,
                        finished[req.execution_id],
                    )
                    continue
                events = await execute_request(req, await policies.current(), adapters)
                await emitter.emit(events)
            except CodecError as exc:
                await dead_letters.reject(msg, exc)
                continue
            # Only once its outcome is durable: see processors/emitter.py.
            finished[req.execution_id] = events[0].event_type

    return app
