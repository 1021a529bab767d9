"""The one rule for action names, shared by the policy's catalog and upstream's
`CaseResolved.actions_taken` (README, "Action names").

Upstream systems name what operators did in their own words (`query:balance`,
`crm.refund`, `close-ticket`); a desk must be able to catalog those names as they are,
never rewrite its history. The alphabet stays narrow enough to be safe everywhere a name
goes: Avro strings, SQL parameters, HTML attributes and form values (escaped), Prometheus
label values, YAML keys without quoting, log lines without ambiguity (no spaces, no
control characters, no slashes that would read as a path).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ACTION_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]*$"
ACTION_NAME_MAX = 128
_ACTION_NAME = re.compile(ACTION_NAME_PATTERN)
ACTION_NAME_RULE = (
    f"a letter, then letters, digits, '_', '.', ':' or '-', at most {ACTION_NAME_MAX} characters"
)


def action_name_problem(name: str) -> str | None:
    """Why `name` cannot be an action name, or None when it can."""
    if len(name) > ACTION_NAME_MAX:
        return f"action name {name[:40]!r}… is {len(name)} characters; {ACTION_NAME_RULE}"
    if _ACTION_NAME.fullmatch(name) is None:
        return f"action name {name!r} breaks the rule: {ACTION_NAME_RULE}"
    return None


def actions_taken_problem(names: Iterable[str]) -> str | None:
    """Why a CaseResolved's `actions_taken` names break the rule (the first one), or None."""
    for index, name in enumerate(names):
        if (problem := action_name_problem(name)) is not None:
            return f"invalid_action_name: actions_taken[{index}]: {problem}"
    return None
