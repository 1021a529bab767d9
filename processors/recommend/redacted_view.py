"""The redacted view of a case: what of it any recommender may read, and nothing more.

The data-field guardrail, applying the policy's model_visibility section
(policy/visibility.py). Two rules, applied before any model (baseline or LLM) sees a case:
1. only the policy's allowlisted dotted paths are read (`subject`, `attributes.product`;
   a bare map name such as `attributes` exposes every entry of that map);
2. personal data inside every string read is replaced by `[<pattern name>]`, using the
   policy's redaction patterns (custom ones first, then email, card, phone); what intake
   sealed is already ciphertext and becomes `[<label>]` (`[email]`, `[customer.name]`).
The result is the exact model input, with the list of fields seen and its sha256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import orjson

from policy.redaction import Substitution
from policy.sealing import conceal
from policy.visibility import ModelVisibility
from processors.recommend.case_view import CaseView
from schemas.events import Scalar

_MAPS = ("attributes", "customer")
_TOP_LEVEL = frozenset(
    {"source", "channel", "queue", "team", "issue_class", "subject", "description", "priority"}
)


@dataclass(frozen=True, slots=True)
class Visibility:
    """An allowlist and its compiled redaction patterns, ready for the hot path."""

    fields: tuple[str, ...]
    patterns: tuple[tuple[str, Substitution], ...]

    @classmethod
    def from_policy(cls, visibility: ModelVisibility) -> Visibility:
        """Compile the policy section once (its own `redact` recompiles on every call)."""
        compiled = visibility.redaction.patterns()
        return cls(visibility.fields, tuple(compiled.items()))

    def redact(self, text: str) -> str:
        """`text` with every pattern's matches replaced by `[<name>]`, in policy order;
        values intake sealed (policy.sealing) first become `[<label>]` the same way."""
        text = conceal(text)
        for name, pattern in self.patterns:
            text = pattern.sub(f"[{name}]", text)
        return text


@dataclass(frozen=True, slots=True)
class ModelInput:
    """Exactly what a recommender receives about a case."""

    fields: Mapping[str, Scalar]  # dotted path -> redacted value, in allowlist order
    fields_seen: tuple[str, ...]
    sha256: str


def _entries(case: CaseView, path: str) -> list[tuple[str, Scalar]]:
    """The (path, value) pairs an allowlist entry exposes, absent values left out."""
    head, _, key = path.partition(".")
    if head in _MAPS:
        mapping: Mapping[str, Scalar] = getattr(case, head)
        if key:
            return [(path, mapping[key])] if mapping.get(key) is not None else []
        return [(f"{head}.{k}", mapping[k]) for k in sorted(mapping) if mapping[k] is not None]
    value = getattr(case, head) if head in _TOP_LEVEL else None
    return [(path, value)] if value is not None else []


def model_input(case: CaseView, visibility: Visibility) -> ModelInput:
    """Rule: only allowlisted, present fields reach a model, every string redacted."""
    seen: dict[str, Scalar] = {}
    for path in visibility.fields:
        for dotted, value in _entries(case, path):
            seen[dotted] = visibility.redact(value) if isinstance(value, str) else value
    return ModelInput(
        fields=MappingProxyType(seen), fields_seen=tuple(seen), sha256=sha256_json(seen)
    )


def restrict(case: CaseView, visibility: Visibility) -> CaseView:
    """The view with every non-allowlisted field blanked and every kept string redacted.

    What the baseline keeps in memory for learning: it never holds what a model may not
    see. Ids are kept; they link events and carry no personal data.
    """
    seen = model_input(case, visibility).fields
    maps: dict[str, dict[str, Scalar]] = {m: {} for m in _MAPS}
    for path, value in seen.items():
        head, _, key = path.partition(".")
        if key:
            maps[head][key] = value

    def text(name: str) -> str:
        value = seen.get(name)
        return "" if value is None else str(value)

    return replace(
        case,
        source=text("source"),
        channel=text("channel"),
        queue=text("queue"),
        team=text("team"),
        subject=text("subject"),
        description=text("description"),
        priority=text("priority"),
        issue_class=text("issue_class") or None,
        customer=MappingProxyType({k: str(v) for k, v in maps["customer"].items()}),
        attributes=MappingProxyType(maps["attributes"]),
    )


def sha256_json(value: object) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys, UTF-8, no spaces)."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
