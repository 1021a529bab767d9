"""Parameters bound from the case: facts casegate copies in, never a model's guess.

A catalog parameter with `from_case` (policy.catalog.ParamSpec) takes its value from
the case itself: an order id, an amount. Models may not see such facts (they are
outside the allowlist or redacted), and if they could, case text could steer them. So
whatever a recommender proposed for a bound parameter is dropped and replaced here,
from the full case view, after the recommender has answered. Checking the value is
left to the guard, like any parameter; a value the case lacks is left out, so the
guard refuses the action as `param_invalid` rather than run it with a guess.

One implementation for both recommenders (baseline vote and LLM), called by
processors.recommend.service.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from policy.catalog import Action, ParamType
from processors.recommend.case_view import TOP_LEVEL_FIELDS, CaseView
from schemas.events import ActionSpec, Scalar

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


def bound_params(catalog_action: Action) -> Mapping[str, str]:
    """Parameter name -> case path, for the parameters of `catalog_action` bound to the case."""
    return {
        name: spec.from_case
        for name, spec in catalog_action.params.items()
        if spec.from_case is not None
    }


def without_bound(action: ActionSpec, catalog_action: Action) -> ActionSpec:
    """`action` minus the parameters casegate will fill itself.

    What a recommender's proposal is judged on: its value for a bound parameter is
    about to be replaced, so it is neither an error nor a reason to withdraw the action.
    """
    bound = bound_params(catalog_action)
    if not any(name in bound for name in action.params):
        return action
    return ActionSpec(
        name=action.name, params={k: v for k, v in action.params.items() if k not in bound}
    )


def bind_case_params(action: ActionSpec, catalog_action: Action, case: CaseView) -> ActionSpec:
    """`action` with every bound parameter taken from `case`, converted to its declared type.

    `case` must be the full view (customer and attributes kept), not the model-visible
    one. Proposed values of bound parameters never survive, even when the case lacks
    the value: a parameter the case cannot fill is left out.
    """
    return bind_values(action, catalog_action, lambda path: case_value(case, path))


def bind_values(
    action: ActionSpec, catalog_action: Action, lookup: Callable[[str], Scalar]
) -> ActionSpec:
    """`action` with every bound parameter taken from `lookup(case path)`: the one rule
    for a recommender's proposal (the case view) and an operator's override (the values
    the decision carried, `GuardrailDecided.case_bound`)."""
    bound = bound_params(catalog_action)
    if not bound:
        return action
    params = {k: v for k, v in action.params.items() if k not in bound}
    for name, path in bound.items():
        value = lookup(path)
        if _present(value):
            params[name] = as_declared(value, catalog_action.params[name].type)
    return ActionSpec(name=action.name, params=params)


def case_bound_values(catalog: Iterable[Action], case: CaseView) -> dict[str, Scalar]:
    """The case's value at every path the catalog binds: what a recommendation carries so
    that an override's bound parameters come from the case, never from the operator."""
    paths = {path for entry in catalog for path in bound_params(entry).values()}
    values = {path: case_value(case, path) for path in sorted(paths)}
    return {path: value for path, value in values.items() if _present(value)}


def case_value(case: CaseView, path: str) -> Scalar:
    """The value at a dotted case path (`attributes.order_id`, `customer.id`, `queue`)."""
    root, _, key = path.partition(".")
    if root == "attributes":
        return case.attributes.get(key)
    if root == "customer":
        return case.customer.get(key)
    # The policy validated the path; the allowlist still keeps getattr off anything
    # else a CaseView holds (its event ids), should an unvalidated path ever get here.
    if root in TOP_LEVEL_FIELDS and not key:
        value: Scalar = getattr(case, root)
        return value
    return None


def _present(value: Scalar) -> bool:
    # A blank string is no order id: leaving it out makes the guard say "required"
    # instead of a confusing pattern mismatch on "".
    return value is not None and not (isinstance(value, str) and not value.strip())


def as_declared(value: Scalar, kind: ParamType) -> Scalar:
    """`value` as the declared parameter type when it converts cleanly, else unchanged.

    Upstream maps carry loosely typed values (an amount as "49.50", an id as 1001).
    A value that does not convert is passed on as it is: it still came from the case,
    and the guard's `param_invalid` then names the offending value.
    """
    if kind == "number":
        return _number(value)
    if kind == "integer":
        return _integer(value)
    if kind == "boolean":
        return _boolean(value)
    return _string(value)  # string, enum


def _number(value: Scalar) -> Scalar:
    if isinstance(value, bool):  # a flag is not an amount, though Python says int
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _integer(value: Scalar) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())  # exact, even beyond float precision
        except ValueError:
            value = _number(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _boolean(value: Scalar) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return value


def _string(value: Scalar) -> Scalar:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))  # an id sent as 1001.0 is "1001", not "1001.0"
    if isinstance(value, int | float):
        return str(value)
    return value
