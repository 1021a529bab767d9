"""The baseline's answer: a similarity-weighted vote of the most similar resolved cases.

Category: the category with the largest summed similarity among the neighbours.
Confidence: that category's share of the vote, scaled down when even the closest
neighbour is not very close (below FULL_SIMILARITY).
Action: the same vote over the actions each neighbour took (a neighbour where humans
took no allowed action votes for "no action"). Parameters come from the case's own
visible attributes of the same name, else from a value most of the voters agree on;
parameters the catalog binds to the case are then replaced by the service
(processors.recommend.binding), so a history value never stands in for a case fact.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping

from processors.recommend.answer import Answer, Neighbor
from processors.recommend.baseline import BaselineIndex
from processors.recommend.visibility import ModelInput
from schemas.events import ActionSpec, Scalar

FULL_SIMILARITY = 0.5
SUMMARY_CHARS = 280
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PLACEHOLDER = re.compile(r"\[[a-z_]+\]")


def baseline_answer(
    inp: ModelInput, index: BaselineIndex, *, case_id: str, allowed_actions: Collection[str] | None
) -> Answer:
    """Rule: no similar history means no category, zero confidence and no action."""
    neighbors = index.neighbors(inp, exclude_case=case_id)
    summary = extractive_summary(inp)
    if not neighbors:
        return Answer(
            summary,
            None,
            0.0,
            (),
            None,
            f"Insufficient history: {index.resolved_count} resolved case(s) "
            "indexed and none is similar enough to vote. No action recommended.",
        )
    category, cat_weight, total = _winner((n.category, n.similarity) for n in neighbors)
    confidence = round(cat_weight / total * min(1.0, neighbors[0].similarity / FULL_SIMILARITY), 3)
    action, act_weight, _ = _winner(_action_votes(neighbors, allowed_actions))
    spec = (
        None
        if action is None
        else ActionSpec(name=action, params=_params(action, neighbors, inp.fields))
    )
    return Answer(
        summary,
        category,
        confidence,
        neighbors,
        spec,
        _rationale(neighbors, category, cat_weight, total, action, act_weight),
    )


def _winner(votes: Iterable[tuple[str | None, float]]) -> tuple[str | None, float, float]:
    """The option with the most weight (ties: alphabetical, None last), its weight, total."""
    weights: dict[str | None, float] = defaultdict(float)
    for option, weight in votes:
        weights[option] += weight
    best = min(weights, key=lambda o: (-round(weights[o], 9), o is None, o or ""))
    return best, weights[best], sum(weights.values())


def _action_votes(
    neighbors: tuple[Neighbor, ...], allowed: Collection[str] | None
) -> Iterator[tuple[str | None, float]]:
    """Each neighbour's weight for each allowed action it took, or for "no action" (None)."""
    for n in neighbors:
        names = sorted({a.name for a in n.actions if allowed is None or a.name in allowed})
        if not names:
            yield None, n.similarity
        for name in names:
            yield name, n.similarity


def _params(
    action: str, neighbors: tuple[Neighbor, ...], visible: Mapping[str, Scalar]
) -> dict[str, Scalar]:
    """Parameters for `action`: the case's own visible attribute, else a majority value.

    A value proposed from history needs at least two voters holding more than half of
    the action's weight: a value only one past case used (an order id) is that case's
    own, not this one's. A redacted value is never proposed.
    """
    takers = [(n.similarity, a) for n in neighbors for a in n.actions if a.name == action]
    total = sum(sim for sim, _ in takers)
    support: dict[tuple[str, Scalar], list[float]] = defaultdict(list)
    for sim, taken in takers:
        for name, value in taken.params.items():
            support[(name, value)].append(sim)
    params: dict[str, Scalar] = {}
    for (name, value), sims in sorted(support.items(), key=lambda kv: -sum(kv[1])):
        if name not in params and len(sims) >= 2 and sum(sims) > total / 2:
            params[name] = value
    for name in {name for _, a in takers for name in a.params}:
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


def _rationale(
    neighbors: tuple[Neighbor, ...],
    category: str | None,
    cat_weight: float,
    total: float,
    action: str | None,
    act_weight: float,
) -> str:
    listed = ", ".join(
        f"{n.case_id} ({n.category}, similarity {n.similarity:.2f})" for n in neighbors
    )
    agreeing = sum(1 for n in neighbors if n.category == category)
    text = (
        f"The {len(neighbors)} most similar resolved cases are {listed}. "
        f"{agreeing} of them were {category} (weighted vote {cat_weight:.2f} of "
        f"{total:.2f})."
    )
    if action is None:
        return text + " Most of the vote went to taking no catalog action, so none is recommended."
    took = sum(1 for n in neighbors if any(a.name == action for a in n.actions))
    return text + (
        f" Humans took {action} in {took} of them (weighted vote {act_weight:.2f} of {total:.2f})."
    )
