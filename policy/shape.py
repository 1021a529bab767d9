"""The shape of the policy document: which model sits at a location, which models exist.

Walked from `policy.model.Policy` through field annotations, so it follows any field
added to the models. Used by the generated reference (policy.reference) and by the
loader, whose errors name the keys a mapping allows and the reference section to read.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from policy.model import Policy

# How the generated reference is named in error messages (relative to the repository).
REFERENCE = "docs/policy-reference.md"


def anchor(model: type[BaseModel]) -> str:
    """The reference section of `model` (GitHub's heading anchors: lower case)."""
    return f"{REFERENCE}#{model.__name__.lower()}"


# --- walking the model -----------------------------------------------------------------


def strip(annotation: Any) -> tuple[Any, list[Any]]:
    """`annotation` without Annotated wrappers, and the metadata they carried."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        metadata += extra
        annotation = base
    return annotation, metadata


def union_members(annotation: Any) -> list[Any]:
    """The members of a union (X | None, Union[...]), or [annotation]."""
    annotation, _ = strip(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return list(get_args(annotation))
    return [annotation]


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """Every model class an annotation refers to, containers and unions included."""
    annotation, _ = strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in get_args(annotation):
        if arg is not Ellipsis:
            yield from _models_in(arg)


def models(root: type[BaseModel] = Policy) -> list[type[BaseModel]]:
    """`root` and every model reachable from its fields, in first-seen (document) order."""
    seen: list[type[BaseModel]] = [root]
    for model in seen:
        for field in model.model_fields.values():
            seen += [m for m in _models_in(field.annotation) if m not in seen]
    return seen


def model_at(loc: Sequence[int | str], root: type[BaseModel] = Policy) -> type[BaseModel] | None:
    """The model whose fields the document location `loc` (a pydantic error's `loc`) sits
    in, or None when it is not inside a model (a list item, a scalar)."""
    current: Any = root
    for item in loc:
        current, _ = strip(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(item))
            if field is None:
                return None
            current = field.annotation
            continue
        current = _step(current, item)
        if current is None:
            return None
    current, _ = strip(current)
    candidates = [m for m in union_members(current) if isinstance(m, type)]
    return next((m for m in candidates if issubclass(m, BaseModel)), None)


def _step(annotation: Any, item: int | str) -> Any:
    """One location step into a container or a tagged union."""
    options = [m for m in union_members(annotation) if m is not type(None)]
    for member in options:  # a discriminated union: the tag names the member
        if isinstance(member, type) and issubclass(member, BaseModel):
            kind = member.model_fields.get("kind")
            if kind is not None and kind.default == item:
                return member
    if len(options) != 1:
        return None
    container = options[0]
    origin, args = get_origin(container), get_args(container)
    if origin is dict and item != "[key]":
        return args[1]
    if origin in (tuple, list) and isinstance(item, int):
        return args[0]
    return None
