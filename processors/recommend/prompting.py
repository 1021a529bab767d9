"""The LLM's side of the contract: a versioned prompt in, a validated answer out.

Prompts are files `prompts/<version>.txt` kept in the repository; a line
`==== user ====` splits the system message from the user message. Case data only ever
fills the user message, JSON-encoded inside <case>…</case>, so it cannot pose as rules.
The catalog, the categories and the bounds come from the policy, never from the case.

Placeholders: `{{categories}}`, `{{history}}`, `{{case}}`, and the workflow's actions as
either `{{actions}}` (every parameter with its limits; recommend_v1) or
`{{actions_marking_bound}}` (parameters bound from the case shown as filled by casegate,
so the model need not guess them; recommend_v2). Two placeholders rather than one whose
rendering changed, so that a published prompt version keeps meaning the same text. For
the same reason the baseline model's evidence has a placeholder of its own,
`{{evidence}}` (recommend_v3): the similar cases as in `{{history}}`, then the baseline's
most probable categories and allowed actions with their calibrated probabilities.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policy.checks import PARAM_INVALID, action_findings
from policy.model import Policy, Workflow
from processors.recommend.answer import Answer, Neighbor
from processors.recommend.binding import without_bound
from processors.recommend.redacted_view import ModelInput
from schemas.events import ActionSpec

PROMPTS = Path(__file__).parent / "prompts"
USER_SPLIT = "==== user ===="
UNKNOWN = "unknown"
RAW_OUTPUT_CHARS = 20_000  # what a ModelOutputRejected keeps of a runaway answer
BOUND_NOTE = "filled by casegate from the case; leave it out"
_VERSION = re.compile(r"^[a-z0-9_]+$")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@functools.cache
def load_prompt(version: str) -> tuple[str, str]:
    """(system template, user template) of prompt `version`; the name is a file stem only."""
    if not _VERSION.fullmatch(version):
        raise ValueError(f"prompt version {version!r} must match {_VERSION.pattern}")
    text = (PROMPTS / f"{version}.txt").read_text(encoding="utf-8")
    system, sep, user = text.partition(USER_SPLIT + "\n")
    if not sep:
        raise ValueError(f"prompt {version} lacks the {USER_SPLIT!r} line")
    return system.strip(), user.strip()


def suggestible(workflow: Workflow) -> list[str]:
    """The workflow's actions a recommender may name: all but the prohibited ones."""
    return [name for name, rule in workflow.actions.items() if rule.mode != "prohibited"]


def render_messages(
    version: str,
    inp: ModelInput,
    workflow: Workflow,
    policy: Policy,
    categories: Collection[str],
    neighbors: tuple[Neighbor, ...],
    *,
    baseline: Answer | None = None,
) -> list[dict[str, str]]:
    """The chat messages for one case: rules and catalog as system, case data as user.

    `baseline` is the baseline's answer whose probabilities `{{evidence}}` shows.
    """
    system, user = load_prompt(version)
    names = sorted(categories)
    system = (
        system.replace("{{categories}}", ", ".join(f'"{c}"' for c in names) or "(none yet)")
        .replace("{{actions}}", _catalog(workflow, policy, mark_bound=False))
        .replace("{{actions_marking_bound}}", _catalog(workflow, policy, mark_bound=True))
    )
    user = (
        user.replace("{{history}}", _history(neighbors))
        .replace("{{evidence}}", _evidence(neighbors, baseline))
        .replace("{{case}}", case_json(inp))
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def case_json(inp: ModelInput) -> str:
    """The model input as JSON, with < and > escaped so no value can close the <case> tag."""
    text = json.dumps(dict(inp.fields), ensure_ascii=False, indent=1)
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def _catalog(workflow: Workflow, policy: Policy, *, mark_bound: bool) -> str:
    lines = []
    for name in suggestible(workflow):
        action = policy.catalog[name]
        bounds = workflow.actions[name].bounds
        params = []
        for pname, spec in action.params.items():
            if mark_bound and spec.from_case is not None:
                params.append(f"{pname} ({BOUND_NOTE})")
                continue
            limits = [spec.type, "required" if spec.required else "optional"]
            bound = bounds.get(pname)
            # Show the narrower of catalog and workflow limits: the model should aim
            # inside the envelope, not merely inside the catalog.
            low = _narrowest(spec.min, bound.min if bound else None, max)
            high = _narrowest(spec.max, bound.max if bound else None, min)
            values = bound.values if bound and bound.values else spec.values
            limits += [f"min {low:g}"] if low is not None else []
            limits += [f"max {high:g}"] if high is not None else []
            limits += [f"one of {'|'.join(values)}"] if values else []
            limits += [f"matching {spec.pattern}"] if spec.pattern else []
            limits += [f"at most {spec.max_length} characters"] if spec.max_length else []
            params.append(f"{pname} ({', '.join(limits)})")
        lines.append(
            f"- {name}: {action.description or name}; parameters: {'; '.join(params) or 'none'}"
        )
    return "\n".join(lines) or "(no actions: answer with action null)"


def _narrowest(
    catalog: float | None, workflow: float | None, pick: Callable[[list[float]], float]
) -> float | None:
    present = [v for v in (catalog, workflow) if v is not None]
    return pick(present) if present else None


def _history(neighbors: tuple[Neighbor, ...]) -> str:
    # Categories and action names only: past cases' text and parameters belong to
    # other customers and must not reach the model.
    rows = [
        f"- similarity {n.similarity:.2f}: category {n.category}; actions taken: "
        f"{', '.join(a.name for a in n.actions) or 'none'}"
        for n in neighbors
    ]
    return "\n".join(rows) or "(no similar resolved cases yet)"


def _evidence(neighbors: tuple[Neighbor, ...], baseline: Answer | None) -> str:
    # Names and probabilities only, like _history: nothing of another customer's case.
    lines = ["Similar resolved cases (most similar first):", _history(neighbors)]
    if baseline is not None and baseline.category_probabilities:
        cats = ", ".join(f"{c} {p:.2f}" for c, p in baseline.category_probabilities)
        acts = ", ".join(f"{a or 'no action'} {p:.2f}" for a, p in baseline.action_probabilities)
        lines += [
            f"Baseline model's most probable categories: {cats}.",
            f"Baseline model's most probable actions among those allowed: {acts}.",
        ]
    else:
        lines.append("(the baseline model has no estimate yet)")
    return "\n".join(lines)


class ModelAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, bool | int | float | str | None] = Field(default_factory=dict)


class ModelOutput(BaseModel):
    """The JSON object the prompt asks for; anything else is rejected."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(min_length=1, max_length=2_000)
    category: str = Field(min_length=1, max_length=64)
    confidence: float = Field(ge=0.0, le=1.0)
    action: ModelAction | None = None
    rationale: str = Field(min_length=1, max_length=4_000)


def validate_output(
    raw: str, workflow: Workflow, policy: Policy, categories: Collection[str]
) -> tuple[ModelOutput | None, list[str]]:
    """The parsed answer, or None and every reason it is unacceptable.

    Rules: one JSON object of the ModelOutput shape; a known category or "unknown"; an
    action the workflow lets a recommender suggest, whose parameters have the catalog's
    types and stay inside the catalog's limits (parameters bound from the case excepted:
    whatever the model put there is replaced, never judged). A breach of the workflow's
    own narrower bounds is left for the guard, which may route it to a human as the
    policy says.
    """
    body = raw.strip()
    fenced = _FENCE.match(body)
    try:
        obj = json.loads(fenced.group(1) if fenced else body)
        output = ModelOutput.model_validate(obj)
    except json.JSONDecodeError as exc:
        return None, [f"invalid_json: {exc}"]
    except ValidationError as exc:
        return None, [
            f"invalid_shape: {'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
            for e in exc.errors()
        ]
    errors = []
    if output.category != UNKNOWN and output.category not in categories:
        errors.append(f"unknown_category: {output.category!r} is not a known category")
    if output.action is not None:
        spec = ActionSpec(name=output.action.name, params=dict(output.action.params))
        errors += action_errors(spec, workflow, policy)
    return (None, errors) if errors else (output, [])


def action_errors(action: ActionSpec, workflow: Workflow, policy: Policy) -> list[str]:
    """Why a recommender may not propose `action` ("<code>: <detail>"); empty if it may.

    The guard's own check, minus three kinds of finding that are not a model's error: a
    breach of the workflow's narrower bounds (the guard routes it as the policy says),
    a missing required parameter (the prompt tells the model to leave out what it
    cannot see, such as a redacted order id; the guard then refuses the action), and
    anything about a parameter bound from the case (casegate replaces the proposed
    value with the case's own, see processors.recommend.binding).
    """
    entry = policy.catalog.get(action.name)
    if entry is not None:
        action = without_bound(action, entry)
    declared = entry.params.items() if entry is not None else ()
    missing = {
        f"{name} is required"
        for name, spec in declared
        if spec.required and action.params.get(name) is None
    }
    # policy.checks reports a missing parameter as PARAM_INVALID "<name> is required";
    # matching its detail text is the only way to tell it apart today.
    return [
        f"{f.code}: {f.detail}"
        for f in action_findings(action, workflow, policy)
        if not f.negotiable and not (f.code == PARAM_INVALID and f.detail in missing)
    ]


def known_categories(learned: Mapping[str, int]) -> frozenset[str]:
    """Categories the model may answer: those history holds (no workflow names one:
    routing never reads the model's category)."""
    return frozenset(c for c, n in learned.items() if n > 0)
