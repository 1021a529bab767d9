"""What the executor may run, and which events an adapter's result becomes (pure).

The execute agent does the I/O: it asks `authorize_execution` under the *current*
policy, runs the adapter with the action's timeout and the execution id as idempotency
key, runs `rollback_request` through the adapter when one is returned, and produces
`outcome_events`. The semantics as tables: docs/decision-tables.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from policy.approval import approval_shortfall
from policy.checks import Finding, action_findings, as_policy, is_denied
from policy.loader import LoadedPolicy
from policy.model import Action, Policy
from schemas.envelope import caused_by
from schemas.events import (
    ActionSpec,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    Scalar,
    derived_event_id,
)

POST_CONDITION_FAILED = "PostConditionFailed"
POLICY_REFUSED = "PolicyRefused"
UNENCODABLE_RESULT = "UnencodableResult"
# What the `result` map of ExecutionSucceeded carries (Avro long, double, string).
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
RESULT_MAX_CHARS = 100_000  # keeps the outcome event far below the broker's record limit


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterResult:
    """What an adapter reports for one run; `result` is the adapter's own answer."""

    ok: bool
    timed_out: bool = False
    error_class: str | None = None
    retriable: bool = False
    message: str = ""
    result: Mapping[str, Scalar] = field(default_factory=dict)
    duration_ms: float = 0.0

    @classmethod
    def timeout(cls, timeout_s: float, duration_ms: float) -> AdapterResult:
        """No answer within the action's timeout. Retriable: the idempotency key makes a
        second attempt safe even if the first one did land."""
        return cls(
            ok=False,
            timed_out=True,
            error_class="Timeout",
            retriable=True,
            message=f"no answer within {timeout_s:g}s",
            duration_ms=duration_ms,
        )


class UnencodableResultError(ValueError):
    """A downstream reply that ExecutionSucceeded's schema cannot carry."""


def _text(value: str) -> str:
    """`value` as UTF-8 can hold it: a lone surrogate (JSON allows `\\ud800`) becomes U+FFFD."""
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def _scalar(name: str, value: object) -> Scalar:
    if value is None or isinstance(value, bool | str):
        return _text(value) if isinstance(value, str) else value
    if isinstance(value, int):
        if not LONG_MIN <= value <= LONG_MAX:
            raise UnencodableResultError(f"{name!r} is an integer outside 64 bits ({value})")
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise UnencodableResultError(f"{name!r} is {value}, which JSON cannot hold")
        return value
    try:  # a nested value is kept as its JSON text, the way the read models show it
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise UnencodableResultError(f"{name!r} has no JSON form: {exc}") from None


def schema_result(result: Mapping[Any, object]) -> dict[str, Scalar]:
    """`result` as ExecutionSucceeded can carry it, or UnencodableResultError saying why.

    Kept as is: null, booleans, 64-bit integers, finite floats, strings (lone surrogates
    replaced); nested values become their JSON text. Refused: a non-string key, an
    integer past 64 bits, NaN or infinity, anything JSON cannot write, and a reply past
    RESULT_MAX_CHARS, since changing those would record a value the downstream never sent.
    """
    out: dict[str, Scalar] = {}
    for key, value in result.items():
        if not isinstance(key, str):
            raise UnencodableResultError(f"key {key!r} is not a string")
        out[_text(key)] = _scalar(key, value)
    size = sum(len(k) + len(v) if isinstance(v, str) else len(k) for k, v in out.items())
    if size > RESULT_MAX_CHARS:
        raise UnencodableResultError(f"{size} chars, more than {RESULT_MAX_CHARS}")
    return out


def carried(result: AdapterResult) -> AdapterResult:
    """`result` with its reply as the outcome event can carry it; a reply that cannot be
    carried makes the run a failure (`UnencodableResult`, not retriable: the action ran,
    and running it again would not change the answer), so the execution still ends."""
    message = _text(result.message)
    try:
        reply = schema_result(result.result)
    except UnencodableResultError as exc:
        return replace(
            result,
            ok=False,
            error_class=UNENCODABLE_RESULT,
            retriable=False,
            message=f"unencodable_result: {exc}",
            result={},
        )
    return replace(result, message=message, result=reply)


def authorize_execution(
    req: ExecutionRequested, policy: Policy | LoadedPolicy, workflow: str | None = None
) -> str | None:
    """Why the current policy refuses to run `req` ("<code>: <detail>"), or None.

    The policy may have changed since the guard or the approvers saw the action, so it
    is checked again: still in the catalog, parameters still valid, and — given the
    case's workflow (`workflow`, else the one the request carries) — not prohibited,
    within bounds, workflow not back in shadow, for an automatic run still `auto` in a
    `bounded` workflow, and for an approved run approved by enough holders of the roles
    the policy names now. It fails closed: a request that does not name its workflow
    (every request casegate makes does) is refused, whatever its action.
    """
    pol = as_policy(policy)
    workflow = workflow if workflow is not None else req.workflow
    if req.mode not in ("auto", "approved"):
        return f"invalid_mode: {req.mode!r} is neither auto nor approved"
    entry = pol.action(req.action.name)
    if entry is None:
        return f"unknown_action: {req.action.name!r} is no longer in the action catalog"
    if workflow is None:
        return "no_workflow: a run must name the workflow whose policy allowed it"
    wf = pol.workflows.get(workflow)
    if wf is None:
        return f"unknown_workflow: workflow {workflow} is no longer in the policy"
    if wf.phase == "shadow":
        return f"phase_shadow: workflow {workflow} is back in shadow phase"
    findings = action_findings(req.action, wf, pol)
    rule = wf.actions.get(req.action.name)
    if rule is None or is_denied(findings, rule.on_out_of_bounds):
        return _reason(findings[0].code, findings)
    if rule.mode == "suggest":
        return f"suggest_only: {req.action.name} is suggest-only in workflow {workflow}"
    if req.mode == "auto" and (wf.phase != "bounded" or rule.mode != "auto" or findings):
        # Nobody approved this run: it needs the whole envelope, exactly as the guard did.
        return (
            f"not_auto: {req.action.name} is {rule.mode} in workflow {workflow} "
            f"({wf.phase} phase){_details(findings)}"
        )
    if req.mode == "approved":
        return approval_shortfall(req.action.name, [(a.actor, a.roles) for a in req.approvals], pol)
    return None


def deciding_policy_refusal(
    req: ExecutionRequested, versions: Mapping[str, LoadedPolicy]
) -> str | None:
    """Why the policy that decided `req` does not vouch for it, or None: the version it
    names must have been in force here, and its catalog must hold the action. A request
    naming a version nobody published, or an action its own policy never had, is forged
    or broken either way."""
    deciding = versions.get(req.policy_version)
    if deciding is None:
        return (
            f"unknown_policy_version: policy {req.policy_version!r}, which the request names, "
            "was never in force"
        )
    if deciding.policy.action(req.action.name) is None:
        return (
            f"not_in_deciding_catalog: {req.action.name!r} is not in the action catalog of "
            f"policy {req.policy_version}, which decided the request"
        )
    return None


def post_condition_met(action: Action, result: AdapterResult) -> bool:
    """Is the field the adapter spec names as post-condition truthy (or none named)?"""
    name = action.adapter.post_condition
    return name is None or bool(result.result.get(name))


def rollback_request(
    req: ExecutionRequested, result: AdapterResult, action: Action
) -> ActionSpec | None:
    """The action that undoes `req`, when it ran but missed its post-condition and is
    reversible. Parameters come from the rollback spec (`params.x` of the request or
    `result.y` of the run); a source that is missing is left out, and the rollback's
    adapter will report it."""
    if action.rollback is None or not result.ok or post_condition_met(action, result):
        return None
    params: dict[str, Scalar] = {}
    for name, source in action.rollback.params.items():
        kind, _, key = source.partition(".")
        origin = req.action.params if kind == "params" else result.result
        if key in origin:
            params[name] = origin[key]
    return ActionSpec(name=action.rollback.action, params=params)


def rollback_execution_id(req: ExecutionRequested) -> str:
    """Idempotency key for the rollback run of `req`."""
    return derived_event_id(req.execution_id, "rollback")


def outcome_events(
    req: ExecutionRequested,
    result: AdapterResult,
    action: Action,
    now: datetime,
    rollback_result: AdapterResult | None = None,
    attempt: int = 1,
) -> list[Event]:
    """ExecutionSucceeded; or ExecutionFailed (timeouts included); or, for a reversible
    action that ran but missed its post-condition, ExecutionFailed then
    ExecutionRolledBack carrying whether the rollback run (`rollback_result`) succeeded.

    `attempt` > 1 gives a retried run its own event ids.
    """
    kind = "" if attempt == 1 else f"#{attempt}"
    if result.ok and post_condition_met(action, result):
        return [
            ExecutionSucceeded(
                **_answering(req, f"ExecutionSucceeded{kind}", now),
                result=dict(result.result),
                duration_ms=result.duration_ms,
            )
        ]
    failed = _answering(req, f"ExecutionFailed{kind}", now)
    if not result.ok:
        return [
            ExecutionFailed(
                **failed,
                error_class=result.error_class
                or ("Timeout" if result.timed_out else "AdapterError"),
                retriable=result.retriable,
                timed_out=result.timed_out,
                message=result.message,
                duration_ms=result.duration_ms,
            )
        ]
    # It ran, but the world is not in the promised state: not retriable, since running
    # it again would not explain why the first run did not hold.
    condition = action.adapter.post_condition
    events: list[Event] = [
        ExecutionFailed(
            **failed,
            error_class=POST_CONDITION_FAILED,
            retriable=False,
            timed_out=False,
            message=f"post-condition {condition!r} not met by the result",
            duration_ms=result.duration_ms,
        )
    ]
    rollback = rollback_request(req, result, action)
    if rollback is None:
        return events
    if rollback_result is None:
        raise ValueError(
            f"execution {req.execution_id} needs its rollback run first: "
            "run rollback_request(...) and pass rollback_result"
        )
    events.append(
        ExecutionRolledBack(
            **_answering(req, f"ExecutionRolledBack{kind}", now),
            rollback_action=rollback.name,
            reason=f"post_condition_failed: {condition}",
            succeeded=rollback_result.ok,
        )
    )
    return events


def _answering(req: ExecutionRequested, kind: str, now: datetime) -> dict[str, Any]:
    """The fields every outcome of run `req` carries: its envelope (id derived from the
    request and `kind`) and the execution it reports on."""
    return {
        **caused_by(
            req.event_id,
            kind,
            case_id=req.case_id,
            occurred_at=now,
            correlation_id=req.correlation_id,
        ),
        "execution_id": req.execution_id,
        "action_name": req.action.name,
    }


def refused_event(req: ExecutionRequested, reason: str, now: datetime) -> ExecutionFailed:
    """The ExecutionFailed for a run `authorize_execution` refused (nothing was run)."""
    return ExecutionFailed(
        **_answering(req, "ExecutionFailed", now),
        error_class=POLICY_REFUSED,
        retriable=False,
        timed_out=False,
        message=reason,
        duration_ms=0.0,
    )


def _reason(code: str, findings: list[Finding]) -> str:
    return f"{code}: {'; '.join(f.detail for f in findings)}"


def _details(findings: list[Finding]) -> str:
    return f": {'; '.join(f.detail for f in findings)}" if findings else ""
