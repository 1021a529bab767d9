"""Case fields a policy may point at by dotted path.

Two sections name case fields: `model_visibility.fields` (what a model may read) and a
catalog parameter's `from_case` (where casegate takes its value). Both share this list,
which mirrors CaseOpened (architecture §3); it lives apart from either so neither module has
to import the other.
"""

from __future__ import annotations

import re

# CaseOpened fields; the two maps take a sub-key ("attributes.product").
CASE_FIELDS = (
    "source",
    "channel",
    "queue",
    "team",
    "issue_class",
    "subject",
    "description",
    "priority",
    "customer",
    "attributes",
)
MAP_FIELDS = ("customer", "attributes")
# Written by the customer: a parameter bound to them would let case text choose its
# value, which is exactly what binding exists to prevent.
FREE_TEXT_FIELDS = ("subject", "description")
# A map key as upstream systems send it; no dots, so a path has one meaning.
_MAP_KEY = re.compile(r"[A-Za-z0-9_-]+")


def binding_path_problem(path: str) -> str | None:
    """Why `path` cannot name the single case value a parameter is bound to, or None.

    Accepted: `attributes.<key>`, `customer.<key>`, or a top-level field other than the
    free text (`queue`, `team`, `issue_class`...). A whole map is not one value.
    """
    root, dot, key = path.partition(".")
    if root not in CASE_FIELDS:
        return f"{path!r}: unknown case field {root!r}; allowed: {', '.join(CASE_FIELDS)}"
    if root in MAP_FIELDS:
        if not key:
            return f"{path!r} names the whole {root} map; bind one entry, e.g. {root}.<key>"
        if not _MAP_KEY.fullmatch(key):
            return f"{path!r}: a {root} key is letters, digits, '_' or '-' (one level only)"
        return None
    if dot:
        return f"{path!r}: only {' and '.join(MAP_FIELDS)} take a sub-key"
    if root in FREE_TEXT_FIELDS:
        return f"{path!r}: free text written by the customer cannot bind a parameter"
    return None
