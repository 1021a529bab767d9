"""The baseline recommender's answer for one case, from the memory's evidence.

Rules, in order:
1. no model yet (no labelled history): no category, zero confidence, no action;
2. a precedent (a case an operator corrected, with the very same words) gives the
   category and the action, with confidence 1: a human already judged this text;
3. otherwise the category is the most probable one and the confidence its calibrated
   probability; the action is the most probable among the actions the workflow lets a
   recommender suggest and "no catalog action", which also holds the probability of
   the actions the workflow does not allow;
4. below the workflow's `min_confidence` (the calibrated probability of the category,
   which is the recommendation's confidence) the baseline abstains: no action, and the
   rationale says so; the action's own probability is stated either way;
5. parameters come from the case's own visible attribute of the same name, else from a
   value at least two similar cases that took the action agree on with more than half
   of their similarity; parameters the catalog binds to the case are then replaced by
   the service (`binding`), so a history value never stands in for a case fact.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from processors.recommend.answer import Answer, Neighbor
from processors.recommend.memory import Evidence, Precedent
from processors.recommend.redacted_view import ModelInput
from schemas.events import ActionSpec, Scalar

BASELINE_MODEL = "sklearn-ngram-linear-mlp-knn-v1"
SUMMARY_CHARS = 280
SHOWN_CASES = 5  # similar cases named in the rationale (all are in `similar_cases`)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PLACEHOLDER = re.compile(r"\[[a-z_]+\]")
NO_ACTION = ""


def baseline_answer(
    inp: ModelInput,
    evidence: Evidence | None,
    *,
    allowed: Collection[str] | None,
    min_confidence: float,
    labelled: int,
    bound: Mapping[str, Collection[str]] | None = None,
) -> Answer:
    """The answer for one case; `allowed` None means any catalog action. `bound` names,
    per action, the parameters casegate fills from the case (no proposal is made for
    them: whatever was proposed would be replaced)."""
    summary = extractive_summary(inp)
    if evidence is None:
        return Answer(
            summary,
            None,
            0.0,
            (),
            None,
            f"Insufficient history: {labelled} labelled case(s) and no model fitted yet. "
            "No action recommended.",
        )
    precedent = evidence.precedent
    category, confidence = evidence.categories[0]
    if precedent is not None and precedent.category is not None:
        category, confidence = precedent.category, 1.0
    candidates = _candidates(evidence.actions, allowed)
    # Ties go to "no action" (the cautious choice), then to the first in the model's order.
    action_name, action_p = max(candidates, key=lambda kv: (kv[1], kv[0] == NO_ACTION))
    follows = precedent is not None and precedent.actions is not None
    if precedent is not None and precedent.actions is not None:
        action_name, action_p = _precedent_action(precedent.actions, allowed), 1.0
    text = [_category_text(evidence, category, confidence, precedent)]
    text.append(_similar_text(evidence.similar))
    action = None
    if confidence < min_confidence:
        text.append(
            f"Confidence {confidence:.2f} is below this workflow's threshold "
            f"{min_confidence:.2f}: the recommender abstains, no action recommended."
        )
    elif action_name == NO_ACTION:
        text.append(
            "Following the precedent, no catalog action is recommended."
            if follows
            else f"Taking no allowed catalog action is the most probable next step "
            f"({action_p:.2f}), so none is recommended."
        )
    else:
        skip = bound.get(action_name, ()) if bound is not None else ()
        action = ActionSpec(
            name=action_name, params=_params(action_name, evidence.similar, inp.fields, skip)
        )
        took = sum(1 for n in evidence.similar if any(a.name == action_name for a in n.actions))
        source = "as the precedent did" if follows else f"probability {action_p:.2f}"
        text.append(
            f"Next action {action_name} ({source}); "
            f"humans took it in {took} of the {len(evidence.similar)} similar cases."
        )
    text.append(f"Model {evidence.model_version}.")
    ranked = sorted(candidates, key=lambda kv: (-kv[1], kv[0]))[:3]
    return Answer(
        summary,
        category,
        round(confidence, 3),
        evidence.similar,
        action,
        " ".join(text),
        category_probabilities=evidence.categories[:3],
        action_probabilities=tuple(ranked),
        model_version=evidence.model_version,
    )


def _candidates(
    probabilities: Mapping[str, float], allowed: Collection[str] | None
) -> list[tuple[str, float]]:
    """The allowed actions the model knows, and "no action", which also takes the
    probability of every action this workflow does not allow (a recommender cannot
    propose those, so their share is a share of recommending nothing)."""
    kept = [
        (name, p)
        for name, p in probabilities.items()
        if name != NO_ACTION and (allowed is None or name in allowed)
    ]
    rest = max(0.0, 1.0 - sum(p for _, p in kept))
    return [*kept, (NO_ACTION, round(rest, 4))]


def _precedent_action(taken: tuple[ActionSpec, ...], allowed: Collection[str] | None) -> str:
    """The first action the precedent took that this workflow allows, else no action."""
    return next((a.name for a in taken if allowed is None or a.name in allowed), NO_ACTION)


def _params(
    action: str,
    neighbors: tuple[Neighbor, ...],
    visible: Mapping[str, Scalar],
    skip: Collection[str] = (),
) -> dict[str, Scalar]:
    """Parameters for `action`: the case's own visible attribute, else a majority value.

    A value proposed from history needs at least two voters holding more than half of
    the action's similarity: a value only one past case used (an order id) is that
    case's own, not this one's. A redacted value is never proposed.
    """
    total = 0.0
    weight: dict[tuple[str, Scalar], float] = {}
    voters: dict[tuple[str, Scalar], int] = {}
    for n in neighbors:
        for taken in n.actions:
            if taken.name != action:
                continue
            total += n.similarity
            for key in taken.params.items():
                if key[0] in skip:
                    continue
                weight[key] = weight.get(key, 0.0) + n.similarity
                voters[key] = voters.get(key, 0) + 1
    # More than half of the weight: at most one value per name can have it.
    params: dict[str, Scalar] = {
        name: value
        for (name, value), w in weight.items()
        if voters[(name, value)] >= 2 and w > total / 2
    }
    for name in {name for name, _ in weight}:
        own = visible.get(f"attributes.{name}")
        if own is not None and not (isinstance(own, str) and _PLACEHOLDER.search(own)):
            params[name] = own
    return dict(sorted(params.items()))


def extractive_summary(inp: ModelInput) -> str:
    """The subject, then the description's first sentence; at most SUMMARY_CHARS."""
    parts = []
    subject = inp.fields.get("subject")
    if isinstance(subject, str) and subject.strip():
        parts.append(subject.strip().rstrip("."))
    description = inp.fields.get("description")
    if isinstance(description, str) and description.strip():
        parts.append(_SENTENCE_END.split(description.strip(), maxsplit=1)[0])
    text = ": ".join(parts) or "(no visible text)"
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1].rstrip() + "…"


def _category_text(
    evidence: Evidence, category: str, confidence: float, precedent: Precedent | None
) -> str:
    if precedent is not None and precedent.category is not None:
        return (
            f"Category {category}: an operator corrected case {precedent.case_id}, which "
            "has the same words, to it; the recommendation follows that precedent."
        )
    linear, network, vote = evidence.parts
    runner_up = (
        f"; next {evidence.categories[1][0]} {evidence.categories[1][1]:.2f}"
        if len(evidence.categories) > 1
        else ""
    )
    return (
        f"Category {category} with probability {confidence:.2f} (linear model {linear:.2f}, "
        f"network {network:.2f}, vote of similar cases {vote:.2f}{runner_up})."
    )


def _names(actions: tuple[ActionSpec, ...]) -> str:
    if len(actions) == 1:  # the usual case, without a generator
        return actions[0].name
    return ", ".join(a.name for a in actions) or "no action"


def _similar_text(similar: tuple[Neighbor, ...]) -> str:
    if not similar:
        return "No labelled case is similar enough to show."
    listed = "; ".join(
        f"{n.case_id} ({n.category}, {_names(n.actions)}, similarity {n.similarity:.2f})"
        for n in similar[:SHOWN_CASES]
    )
    return f"Most similar labelled cases: {listed}."
