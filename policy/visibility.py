"""What the model may see (guardrail question 4) and what audit must hold (question 5)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from policy.case_fields import CASE_FIELDS, MAP_FIELDS
from policy.catalog import Frozen, Name, compile_error
from policy.redaction import BUILTIN_PATTERNS, Substitution
from schemas.events import EVENT_TYPES

# CASE_FIELDS moved to policy.case_fields (parameter binding names case fields too);
# it stays importable from here, where policy.model and older callers look for it.
__all__ = [
    "BUILTIN_PATTERNS",
    "CASE_FIELDS",
    "KNOWN_OUTCOMES",
    "Audit",
    "BuiltinPattern",
    "ModelVisibility",
    "Redaction",
]

BuiltinPattern = Literal["email", "phone", "card"]


class Redaction(Frozen):
    """Personal data removed from free text before a model sees it.

    `builtin` picks from email, phone, card; `custom` adds named regexes (account and
    order ids). Each match is replaced by `[<name>]`.
    """

    builtin: tuple[BuiltinPattern, ...] = ("email", "phone", "card")
    """Built-in patterns to apply."""
    custom: dict[Name, str] = Field(default_factory=dict)
    """Your own patterns by name (Python regular expressions)."""

    @field_validator("custom")
    @classmethod
    def _compiles(cls, custom: dict[str, str]) -> dict[str, str]:
        problems = [f"{name}: {p}" for name, rx in custom.items() if (p := compile_error(rx))]
        if problems:
            raise ValueError("; ".join(problems))
        return custom

    def patterns(self) -> dict[str, Substitution]:
        """The compiled patterns by name, in the order they must be applied."""
        ordered: dict[str, Substitution] = {
            name: re.compile(rx) for name, rx in self.custom.items()
        }
        for name in BUILTIN_PATTERNS:  # fixed order, whatever order the document lists
            if name in self.builtin:
                ordered[name] = BUILTIN_PATTERNS[name]
        return ordered

    def redact(self, text: str) -> str:
        """`text` with every configured pattern replaced by `[<pattern name>]`."""
        for name, pattern in self.patterns().items():
            text = pattern.sub(f"[{name}]", text)
        return text


class ModelVisibility(Frozen):
    """The allowlist of case fields a model may read, as dotted paths, plus redaction.

    A path starts with one of CASE_FIELDS; maps take a sub-key ("attributes.product"),
    and the bare name of a map exposes all of it.
    """

    fields: tuple[str, ...]
    """Dotted case paths the model may read; anything else is withheld."""
    redaction: Redaction = Redaction()
    """Personal data removed from free text before a model reads it."""

    @field_validator("fields")
    @classmethod
    def _known_paths(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        for path in fields:
            root, _, sub = path.partition(".")
            if root not in CASE_FIELDS:
                raise ValueError(
                    f"{path!r}: unknown case field {root!r}; allowed: {', '.join(CASE_FIELDS)}"
                )
            if sub and (root not in MAP_FIELDS or "." in sub or not sub):
                raise ValueError(f"{path!r}: only {' and '.join(MAP_FIELDS)} take a sub-key")
        if len(set(fields)) != len(fields):
            raise ValueError("a field is listed twice")
        return fields


# Outcome-like field values an audit requirement may name, as "<EventType>:<value>".
KNOWN_OUTCOMES: dict[str, tuple[str, ...]] = {
    "GuardrailDecided": (
        "shadowed",
        "approval_required",
        "auto_authorized",
        "denied",
        "out_of_scope",
    ),
    "ApprovalCompleted": ("approved", "rejected"),
    "ReviewRecorded": ("approve", "reject", "override"),
}


class Audit(Frozen):
    """Events (optionally one outcome of them) the audit log must be able to prove it holds.

    Entries are `EventType` or `EventType:outcome`, e.g. `GuardrailDecided:denied`.
    """

    required_outcomes: tuple[str, ...]
    """`EventType` or `EventType:outcome` entries; `casegate audit gaps` checks them."""

    @field_validator("required_outcomes")
    @classmethod
    def _known(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            event_type, sep, outcome = entry.partition(":")
            if event_type not in EVENT_TYPES:
                raise ValueError(
                    f"{entry!r}: unknown event type {event_type!r}; "
                    f"known: {', '.join(sorted(EVENT_TYPES))}"
                )
            if sep and outcome not in KNOWN_OUTCOMES.get(event_type, ()):
                known = ", ".join(KNOWN_OUTCOMES.get(event_type, ())) or "none"
                raise ValueError(
                    f"{entry!r}: unknown outcome {outcome!r} for {event_type} (known: {known})"
                )
        return entries
