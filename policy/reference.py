"""docs/policy-reference.md, generated from the policy model (`casegate policy reference`).

Everything comes from the pydantic models themselves: each model reachable from `Policy`
is a section (its docstring, then one row per field: type, default, allowed values and
constraints, description from the field's docstring), and each section's example is the
first instance of that model in `policy/default.yaml`. A field added to a model appears
on the next generation, with no change here; `tests/unit/test_policy_reference.py` fails
while the checked-in file is not what this module renders.

The walk over the models is policy.shape's, shared with the loader's error messages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo

from policy.loader import default_policy_path, load_policy_file
from policy.model import Policy
from policy.semantics import CHECKS
from policy.shape import REFERENCE, models, strip, union_members
from schemas.names import ACTION_NAME_PATTERN, ACTION_NAME_RULE

REFERENCE_PATH = Path(__file__).resolve().parent.parent / REFERENCE

# --- rendering -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    type: str
    default: str
    allowed: str
    description: str


def _type_name(annotation: Any) -> str:
    annotation, _ = strip(annotation)
    options = union_members(annotation)
    if len(options) > 1:
        shown = [_type_name(m) for m in options if m is not type(None)]
        text = " or ".join(shown)
        return f"{text} or null" if type(None) in options else text
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "string" if all(isinstance(a, str) for a in args) else "value"
    if origin is dict:
        return f"map of {_key_name(args[0])} → {_type_name(args[1])}"
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _key_name(annotation: Any) -> str:
    _, metadata = strip(annotation)
    pattern = next((m.pattern for m in metadata if isinstance(m, StringConstraints)), None)
    if pattern == ACTION_NAME_PATTERN:
        return "action name"
    return "name" if pattern else "string"


# annotated_types constraint -> how the reference writes it, and the attribute it holds.
_BOUNDS: tuple[tuple[type, str, str], ...] = (
    (annotated_types.Ge, "≥", "ge"),
    (annotated_types.Gt, ">", "gt"),
    (annotated_types.Le, "≤", "le"),
    (annotated_types.Lt, "<", "lt"),
    (annotated_types.MinLen, "length ≥", "min_length"),
    (annotated_types.MaxLen, "length ≤", "max_length"),
)


def _constraints(metadata: Sequence[Any]) -> list[str]:
    found: list[str] = []
    for m in metadata:
        if isinstance(m, StringConstraints):
            if m.pattern == ACTION_NAME_PATTERN:
                found.append(f"action name: {ACTION_NAME_RULE}")
                continue
            if m.pattern:
                found.append(f"pattern `{m.pattern}`")
            if m.min_length is not None:
                found.append(f"at least {m.min_length} characters")
            if m.max_length is not None:
                found.append(f"at most {m.max_length} characters")
        else:
            found += [
                f"{sign} {getattr(m, attr)}" for kind, sign, attr in _BOUNDS if isinstance(m, kind)
            ]
    return found


def _allowed(field: FieldInfo) -> str:
    parts: list[str] = [", ".join(_constraints(field.metadata))] if field.metadata else []
    stack: list[tuple[str, Any]] = [("", field.annotation)]
    while stack:  # constraints and literals anywhere inside: keys, items, union members
        label, inner = stack.pop(0)
        annotation, metadata = strip(inner)
        found = ", ".join(_constraints(metadata))
        if found and f"{label}{found}" not in parts:
            parts.append(f"{label}{found}")
        if get_origin(annotation) is Literal:
            parts.append(f"{label}one of " + ", ".join(f"`{a}`" for a in get_args(annotation)))
        elif get_origin(annotation) is dict:
            key, value = get_args(annotation)
            stack += [("keys: ", key), (label, value)]
        else:
            stack += [(label, a) for a in get_args(annotation) if a is not Ellipsis]
    if field.discriminator:
        parts.append(f"chosen by its `{field.discriminator}`")
    return "; ".join(parts)


def _default(model: type[BaseModel], key: str, field: FieldInfo) -> str:
    if key == "name" and model in _keyed():
        return "its key in the document"
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "each field's default"
    return f"`{json.dumps(value, default=list)}`"


def _keyed() -> set[type[BaseModel]]:
    """Models written as `name: {...}` entries of a map: their `name` is the key."""
    found: set[type[BaseModel]] = set()
    for model in models():
        for field in model.model_fields.values():
            annotation, _ = strip(field.annotation)
            if get_origin(annotation) is dict and "name" in getattr(
                get_args(annotation)[1], "model_fields", {}
            ):
                found.add(get_args(annotation)[1])
    return found


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def rows(model: type[BaseModel]) -> list[Row]:
    return [
        Row(
            key=key,
            type=_type_name(field.annotation),
            default=_default(model, key, field),
            allowed=_allowed(field),
            description=field.description or "",
        )
        for key, field in model.model_fields.items()
    ]


def _placeholder(key: str, annotation: Any) -> Any:
    """A value of `annotation` for an example: the first allowed one, or its kind."""
    annotation, _ = strip(annotation)
    options = [m for m in union_members(annotation) if m is not type(None)]
    annotation, _ = strip(options[0])
    origin = get_origin(annotation)
    if origin is Literal:
        return get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _required(annotation)
    simple = {str: f"<{key}>", int: 1, float: 1.0, bool: True, dict: {}, tuple: [], list: []}
    return simple.get(origin or annotation, f"<{key}>")


def _required(model: type[BaseModel]) -> dict[str, Any]:
    """The smallest entry of `model`: its required keys (and its `kind`, if tagged)."""
    return {
        key: _placeholder(key, field.annotation) if field.is_required() else field.default
        for key, field in model.model_fields.items()
        if (field.is_required() and key != "name") or key == "kind"
    }


def _example(model: type[BaseModel], instance: BaseModel | None) -> str:
    if isinstance(instance, Policy):
        return "The whole of `policy/default.yaml`."
    if instance is None:
        data = _required(model)
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None).rstrip()
        return f"Not in `policy/default.yaml`; its required keys:\n\n```yaml\n{text}\n```"
    data = instance.model_dump(mode="json", exclude_unset=True, exclude={"name"})
    text = yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, width=88, default_flow_style=None
    ).rstrip()
    return f"```yaml\n{text}\n```"


def _instances(value: Any, found: dict[type[BaseModel], BaseModel]) -> None:
    """The first instance of each model class inside `value`, in document order."""
    if isinstance(value, BaseModel):
        found.setdefault(type(value), value)
        for key in type(value).model_fields:
            _instances(getattr(value, key), found)
    elif isinstance(value, dict):
        for item in value.values():
            _instances(item, found)
    elif isinstance(value, tuple | list):
        for item in value:
            _instances(item, found)


HEADER = """# Policy reference

Generated from the policy model (`policy/*.py`) by `casegate policy reference` (or
`make docs`); do not edit by hand — `make test` fails while this file is not current.
Semantics and the guard's decisions: [decision-tables.md](decision-tables.md).

Every mapping refuses keys it does not list (a misspelt key is an error that names the
allowed ones). Names: roles, workflows and parameters use `^[a-z][a-z0-9_]*$` (at most 64
characters); catalog actions follow upstream's names: {rule} (`{pattern}`) — the same
rule intake holds `CaseResolved.actions_taken` to, so a desk catalogs its own history's
names as they are.

## Semantic checks

`casegate policy validate FILE`, `casegate policy publish FILE` and the console
(`GET /api/policy`, the metrics page) warn about settings that are valid but can never
take effect on this deployment; `--strict` refuses them instead. Refused outright
(validation errors): a workflow action that is not in the catalog, `auto` on an action
that needs approval, `auto` without a `blast_radius`. Warned:

{checks}
"""


def render() -> str:
    """The reference document, from the models and the default policy."""
    instances: dict[type[BaseModel], BaseModel] = {}
    _instances(load_policy_file(default_policy_path()).policy, instances)
    checks = "\n".join(
        ["| warning | why |", "| --- | --- |"] + [f"| {w} | {why} |" for w, why in CHECKS]
    )
    parts = [HEADER.format(rule=ACTION_NAME_RULE, pattern=ACTION_NAME_PATTERN, checks=checks)]
    for model in models():
        doc = " ".join((model.__doc__ or "").split("\n\n")[0].split())
        rest = "\n\n".join(
            " ".join(p.split()) for p in (model.__doc__ or "").split("\n\n")[1:] if p.strip()
        )
        parts.append(f"## {model.__name__}\n\n{doc}\n")
        if rest:
            parts.append(f"{rest}\n")
        parts.append("| key | type | default | allowed | description |")
        parts.append("| --- | --- | --- | --- | --- |")
        for r in rows(model):
            cells = (f"`{r.key}`", r.type, r.default, r.allowed or "—", r.description or "—")
            parts.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        parts.append(f"\nExample:\n\n{_example(model, instances.get(model))}\n")
    return "\n".join(parts).rstrip() + "\n"
