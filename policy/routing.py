"""Workflow routing: which case fields route a case, and how a workflow's `match` tests them.

The one definition the policy's validation, the guard's case facts, the recommender's case
view and the events' `Routing` record all read, so a field cannot route a case in one place
and be ignored (or refused) in another.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

# Case fields a workflow may match on: the case's routing fields, as upstream last set
# them. Never the model's output: a `category` rule would let the case's text (which the
# model reads) choose the workflow, and with it the guardrails that apply.
MATCH_FIELDS = ("channel", "queue", "team", "issue_class", "priority", "source")
# Fields a workflow once could match on, and why no longer.
REFUSED_MATCH_FIELDS = {
    "category": "it is the model's prediction from the case text, so the text would choose "
    "the workflow and its guardrails; match on the case's routing fields instead "
    "(issue_class is upstream's own class)",
}


def routing_fields(case: object) -> dict[str, str | None]:
    """The MATCH_FIELDS of anything that carries them as attributes (a CaseOpened, the
    guard's facts, the recommender's view, a recorded Routing), by name."""
    return {name: getattr(case, name) for name in MATCH_FIELDS}


def match_problem(match: Collection[str]) -> str | None:
    """Why a workflow's `match` (its field names) cannot be accepted, or None."""
    for field_name, why in REFUSED_MATCH_FIELDS.items():
        if field_name in match:
            return f"match on {field_name!r} is refused: {why}"
    unknown = sorted(set(match) - set(MATCH_FIELDS))
    if unknown:
        return (
            f"match on unknown case field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(MATCH_FIELDS)}"
        )
    return None


def matches(match: Mapping[str, Collection[str]], case_fields: Mapping[str, str | None]) -> bool:
    """Does a case with these routing fields satisfy `match`? Every entry must hold, a
    missing (null) field never matches, and an empty match takes every case."""
    for field_name, allowed in match.items():
        value = case_fields.get(field_name)
        if value is None or value not in allowed:
            return False
    return True
