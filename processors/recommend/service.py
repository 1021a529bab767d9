"""The recommend decision: case views in, RecommendationProduced (+ rejection) out.

`plan_batch` is the processor's one call per batch of cases: the memory scores the whole
batch at once (`Memory.evidence`), then per case it routes, answers, vets and binds, and
for LLM workflows renders the messages. The LLM exchange (if any) happens between the two
pure halves, `plan_batch` and `conclude`. Rules:
- every recommender reads only the policy's allowlisted, redacted fields;
- a case's workflow is the policy's first match on its routing fields as they are now
  (the view folds every CaseUpdated), never on a model's output; no workflow means
  baseline;
- the baseline abstains below the workflow recommender's `min_confidence`;
- LLM failure (timeout, error) -> the baseline answers and provenance says why;
- LLM output that breaks the contract -> ModelOutputRejected, then the baseline answers;
- ids derive from the cause event, so a redelivered cause yields the same events;
- parameters the catalog binds to the case (`from_case`) are filled from the full case
  view after either recommender answered, replacing what it proposed (`binding`);
- no wall clock: the same memory and the same batch give the same events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from policy.loader import LoadedPolicy
from policy.model import LlmRecommender, Policy, Workflow
from policy.workflow import DEFAULT_MIN_CONFIDENCE
from processors.recommend.answer import Answer
from processors.recommend.baseline import BASELINE_MODEL, baseline_answer
from processors.recommend.binding import bind_case_params, bound_params, case_bound_values
from processors.recommend.case_view import CaseView
from processors.recommend.llm import Endpoint, Exchange, acomplete, complete
from processors.recommend.memory import Evidence, Memory
from processors.recommend.prompting import (
    RAW_OUTPUT_CHARS,
    UNKNOWN,
    ModelOutput,
    action_errors,
    known_categories,
    render_messages,
    suggestible,
    validate_output,
)
from processors.recommend.redacted_view import ModelInput, Visibility, model_input, sha256_json
from schemas.envelope import Envelope, caused_by
from schemas.events import (
    ActionSpec,
    Event,
    ModelOutputRejected,
    Provenance,
    RecommendationProduced,
    Scalar,
    SimilarCase,
    derived_event_id,
)

__all__ = [
    "BASELINE_MODEL",
    "Plan",
    "ask_async",
    "conclude",
    "plan",
    "plan_batch",
    "recommend",
    "route",
]


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided before any model call: input, baseline answer, LLM request."""

    case: CaseView
    workflow: Workflow | None
    policy: LoadedPolicy
    inp: ModelInput
    baseline: Answer
    categories: frozenset[str]  # what the LLM may answer; empty when no LLM is asked
    llm: LlmRecommender | None = None
    messages: list[dict[str, str]] | None = None


def plan_batch(cases: Sequence[CaseView], policy: LoadedPolicy, memory: Memory) -> list[Plan]:
    """One plan per case, in order, from one scoring call for the whole batch.

    Each case is routed on its routing fields (see the module rules); a case's plan
    does not depend on the other cases of the batch.
    """
    visibility = _visibility(policy, memory)
    inputs = [model_input(case, visibility) for case in cases]
    # Point-in-time: each case learns only from labels given before its own time.
    evidence = memory.evidence(
        inputs, [case.case_id for case in cases], [case.as_of_ms for case in cases]
    )
    # Worked out once per batch: the cases share the policy.
    vetting: dict[tuple[object, ...], list[str]] = {}
    bound = _bound_names(policy.policy)
    plans = []
    for case, inp, ev in zip(cases, inputs, evidence, strict=True):
        workflow = policy.policy.workflow_for(case.match_fields)
        plans.append(_plan(case, workflow, policy, inp, ev, memory, vetting, bound))
    return plans


def route(case: CaseView, policy: LoadedPolicy) -> Workflow | None:
    """The workflow `plan_batch` puts one case in: from its routing fields alone."""
    return policy.policy.workflow_for(case.match_fields)


def plan(case: CaseView, workflow: Workflow | None, policy: LoadedPolicy, memory: Memory) -> Plan:
    """The plan for one case in a given workflow (`plan_batch` routes by itself)."""
    inp = model_input(case, _visibility(policy, memory))
    [ev] = memory.evidence([inp], [case.case_id], [case.as_of_ms])
    return _plan(case, workflow, policy, inp, ev, memory)


def _plan(
    case: CaseView,
    workflow: Workflow | None,
    policy: LoadedPolicy,
    inp: ModelInput,
    evidence: Evidence | None,
    memory: Memory,
    vetting: dict[tuple[object, ...], list[str]] | None = None,
    bound: dict[str, frozenset[str]] | None = None,
) -> Plan:
    """The baseline's answer and, when the workflow asks for an LLM, its messages.

    `vetting` memoises `action_errors` by (workflow, action, parameters) within a batch;
    `bound` is `_bound_names` of the policy (both computed here when not given).
    """
    allowed = suggestible(workflow) if workflow is not None else list(policy.policy.catalog)
    recommender = workflow.recommender if workflow is not None else None
    threshold = recommender.min_confidence if recommender is not None else DEFAULT_MIN_CONFIDENCE
    baseline = baseline_answer(
        inp,
        evidence,
        allowed=allowed,
        min_confidence=threshold,
        labelled=memory.labelled_count,
        bound=_bound_names(policy.policy) if bound is None else bound,
    )
    if workflow is not None:
        baseline = _vetted(baseline, workflow, policy.policy, {} if vetting is None else vetting)
    # Bound after vetting: a case value outside the limits is the guard's to deny (with
    # the policy's reason), not the recommender's to withdraw silently.
    baseline = _bound(baseline, case, policy.policy)
    if workflow is None or not isinstance(recommender, LlmRecommender):
        return Plan(case, workflow, policy, inp, baseline, frozenset())
    categories = known_categories(memory.categories)
    messages = render_messages(
        recommender.prompt_version,
        inp,
        workflow,
        policy.policy,
        categories,
        baseline.similar,
        baseline=baseline,
    )
    return Plan(case, workflow, policy, inp, baseline, categories, recommender, messages)


def conclude(p: Plan, exchange: Exchange | None, now: datetime) -> list[Event]:
    """The events for a plan, given the LLM exchange (None when no LLM was asked)."""
    if p.llm is None or p.messages is None or exchange is None:
        return [_produced(p, p.baseline, _baseline_provenance(p), now)]
    if exchange.raw is None:
        return [_produced(p, p.baseline, _baseline_provenance(p, exchange), now)]
    if p.workflow is None:
        raise ValueError("an LLM plan always has a workflow")
    output, errors = validate_output(exchange.raw, p.workflow, p.policy.policy, p.categories)
    if output is None:
        rejected = ModelOutputRejected(
            **_answering(p, "ModelOutputRejected", now),
            recommendation_id=_recommendation_id(p),
            model=p.llm.model,
            raw_output=exchange.raw[:RAW_OUTPUT_CHARS],
            errors=tuple(errors),
        )
        reason = f"llm_output_rejected: {len(errors)} error(s), see ModelOutputRejected"
        provenance = _baseline_provenance(p, exchange, reason)
        return [rejected, _produced(p, p.baseline, provenance, now)]
    provenance = Provenance(
        recommender="llm",
        model=p.llm.model,
        prompt_version=p.llm.prompt_version,
        policy_version=p.policy.version,
        fields_seen=p.inp.fields_seen,
        # The exact input of an LLM is the rendered messages, not only the fields.
        input_sha256=sha256_json(p.messages),
        prompt_tokens=exchange.prompt_tokens,
        completion_tokens=exchange.completion_tokens,
        latency_ms=exchange.latency_ms,
        cost_usd=exchange.cost_usd,
    )
    answer = _bound(_llm_answer(output, p.baseline), p.case, p.policy.policy)
    return [_produced(p, answer, provenance, now)]


def recommend(
    case: CaseView,
    workflow: Workflow | None,
    policy: LoadedPolicy,
    memory: Memory,
    now: datetime,
    *,
    endpoint: Endpoint | None = None,
) -> list[Event]:
    """One case end to end: plan, call the LLM if the workflow wants one (blocking,
    bounded), conclude."""
    p = plan(case, workflow, policy, memory)
    exchange = None
    if p.llm is not None and p.messages is not None:
        exchange = complete(p.llm, p.messages, endpoint or Endpoint())
    return conclude(p, exchange, now)


async def ask_async(p: Plan, endpoint: Endpoint | None = None) -> Exchange | None:
    """The plan's LLM exchange, awaited; None when the plan asks no model."""
    if p.llm is None or p.messages is None:
        return None
    return await acomplete(p.llm, p.messages, endpoint or Endpoint())


def _visibility(policy: LoadedPolicy, memory: Memory) -> Visibility:
    """The policy's allowlist; the memory must have learned under the very same one."""
    visibility = Visibility.from_policy(policy.policy.model_visibility)
    if visibility != memory.visibility:
        raise ValueError(
            "the recommender memory was built under another model_visibility; "
            "rebuild it for policy " + policy.version
        )
    return visibility


def _vetted(
    answer: Answer,
    workflow: Workflow,
    policy: Policy,
    memo: dict[tuple[object, ...], list[str]],
) -> Answer:
    """The baseline obeys the LLM's rule: no action a recommender may not propose.

    History may hold parameters the catalog no longer declares (dropped) or values now
    outside its limits (then the action is withdrawn, and the rationale says why).
    """
    if answer.action is None or answer.action.name not in policy.catalog:
        return answer
    declared = policy.catalog[answer.action.name].params
    action = ActionSpec(
        name=answer.action.name,
        params={k: v for k, v in answer.action.params.items() if k in declared},
    )
    # `baseline_answer` builds params in sorted order, so equal actions give equal keys.
    key = (workflow.name, action.name, *action.params.items())
    errors = memo.get(key)
    if errors is None:
        errors = memo[key] = action_errors(action, workflow, policy)
    if not errors:
        return _with(answer, action, answer.rationale)
    note = f" {action.name} is not proposed: {'; '.join(errors)}."
    return _with(answer, None, answer.rationale + note)


def _bound(answer: Answer, case: CaseView, policy: Policy) -> Answer:
    """`answer` with its action's case-bound parameters taken from the full `case`."""
    entry = policy.action(answer.action.name) if answer.action is not None else None
    if answer.action is None or entry is None:
        return answer
    return _with(answer, bind_case_params(answer.action, entry, case), answer.rationale)


def _bound_names(policy: Policy) -> dict[str, frozenset[str]]:
    """Per catalog action, the parameters bound from the case."""
    return {name: frozenset(bound_params(a)) for name, a in policy.catalog.items()}


def _with(answer: Answer, action: ActionSpec | None, rationale: str) -> Answer:
    """`answer` with another action and rationale (dataclasses.replace, minus its cost)."""
    return Answer(
        answer.summary,
        answer.category,
        answer.confidence,
        answer.similar,
        action,
        rationale,
        answer.category_probabilities,
        answer.action_probabilities,
        answer.model_version,
    )


def _answering(p: Plan, kind: str, now: datetime) -> Envelope:
    """The envelope of an event answering the case's latest event (its id derives from it);
    it belongs to the case's opening."""
    return caused_by(
        p.case.last_event_id,
        kind,
        case_id=p.case.case_id,
        occurred_at=now,
        correlation_id=p.case.opened_event_id,
    )


def _recommendation_id(p: Plan) -> str:
    return derived_event_id(p.case.last_event_id, "recommendation")


def _llm_answer(output: ModelOutput, baseline: Answer) -> Answer:
    action = None
    if output.action is not None:
        params: dict[str, Scalar] = {k: v for k, v in output.action.params.items() if v is not None}
        action = ActionSpec(name=output.action.name, params=params)
    category = None if output.category == UNKNOWN else output.category
    return Answer(
        output.summary,
        category,
        round(output.confidence, 3),
        baseline.similar,
        action,
        output.rationale,
    )


def _baseline_provenance(
    p: Plan, exchange: Exchange | None = None, reason: str | None = None
) -> Provenance:
    """Baseline provenance; after an LLM attempt it names the fallback and what it cost."""
    fallback = None
    if p.llm is not None and exchange is not None:
        why = reason or exchange.failure or "llm_error: no answer"
        fallback = f"{why} (model {p.llm.model}, prompt {p.llm.prompt_version})"
    return Provenance(
        recommender="baseline",
        model=BASELINE_MODEL,
        policy_version=p.policy.version,
        fields_seen=p.inp.fields_seen,
        input_sha256=p.inp.sha256,
        fallback_reason=fallback,
        model_version=p.baseline.model_version,
        prompt_tokens=exchange.prompt_tokens if exchange else None,
        completion_tokens=exchange.completion_tokens if exchange else None,
        latency_ms=exchange.latency_ms if exchange else None,
        cost_usd=exchange.cost_usd if exchange else None,
    )


def _produced(
    p: Plan, answer: Answer, provenance: Provenance, now: datetime
) -> RecommendationProduced:
    return RecommendationProduced(
        **_answering(p, "RecommendationProduced", now),
        recommendation_id=_recommendation_id(p),
        workflow=p.workflow.name if p.workflow is not None else None,
        summary=answer.summary,
        category=answer.category,
        confidence=answer.confidence,
        similar_cases=tuple(
            SimilarCase(case_id=n.case_id, similarity=n.similarity) for n in answer.similar
        ),
        action=answer.action,
        rationale=answer.rationale,
        provenance=provenance,
        routing=p.case.routing,
        case_bound=case_bound_values(p.policy.policy.catalog.values(), p.case),
    )
