"""Settings that validate but can never take effect, as warnings (pure).

Validation (`policy.model`) refuses a document that is wrong on its face: a workflow
naming an action the catalog lacks, `auto` on an action that needs approval, `auto`
without a blast radius. What is left here is valid yet pointless, often only on a given
deployment (the budget depends on the partition count), so it warns and does not refuse:
`casegate policy validate`, `policy publish` and the console list these, and
`--strict` turns them into refusals (docs/policy-reference.md, "Semantic checks").
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.guard_rules import auto_run_limit
from policy.model import Policy, Workflow

BOUNDED = "bounded"

# What is warned and why, for the reference (docs/policy-reference.md).
CHECKS: tuple[tuple[str, str], ...] = (
    (
        "`blast_radius.max_auto_runs` below the partition count",
        "the guard gives each of the `CASEGATE_PARTITIONS` partitions "
        "`floor(max_auto_runs / partitions)` runs per window: 0, so nothing ever runs "
        "automatically",
    ),
    (
        "`max_auto_runs` not a multiple of the partition count",
        "only `floor(max_auto_runs / P) x P` runs can happen per window",
    ),
    ("a `blast_radius` with no `auto` action", "the limit is never used"),
    (
        "a `bounded` workflow with no `auto` action",
        "nothing runs automatically: it behaves as `assisted`",
    ),
    (
        "a workflow whose `match` is covered by an earlier one",
        "the first match in document order wins, so it never applies",
    ),
    ("`on_out_of_bounds` on a rule without `bounds`", "nothing is ever out of bounds"),
)


@dataclass(frozen=True, slots=True)
class PolicyWarning:
    """One setting that cannot take effect: where (dotted path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def policy_warnings(policy: Policy, partitions: int) -> list[PolicyWarning]:
    """Every warning for `policy` on a deployment whose topics have `partitions`."""
    found: list[PolicyWarning] = []
    earlier: list[Workflow] = []
    for name, wf in policy.workflows.items():
        at = f"workflows.{name}"
        found += _budget_warnings(at, wf, partitions)
        found += _mode_warnings(at, wf)
        shadowing = next((e for e in earlier if covers(e, wf)), None)
        if shadowing is not None:
            found.append(
                PolicyWarning(
                    f"{at}.match",
                    f"every case it matches is taken by the earlier workflow "
                    f"{shadowing.name!r} (the first match in document order wins), "
                    "so it never applies; move it before, or narrow the earlier one",
                )
            )
        earlier.append(wf)
    return found


def covers(first: Workflow, later: Workflow) -> bool:
    """Does every case `later` matches also match `first`? (Each of `first`'s rules is
    implied by one of `later`'s with a subset of its values; an empty match takes all.)"""
    return all(
        field in later.match and set(later.match[field]) <= set(values)
        for field, values in first.match.items()
    )


def _budget_warnings(at: str, wf: Workflow, partitions: int) -> list[PolicyWarning]:
    autos = [a for a, rule in wf.actions.items() if rule.mode == "auto"]
    br = wf.blast_radius
    if br is None:
        return []
    if not autos:
        return [PolicyWarning(f"{at}.blast_radius", "no action is auto, so it is never used")]
    per_partition = auto_run_limit(br, partitions)
    if per_partition == 0:
        return [
            PolicyWarning(
                f"{at}.blast_radius.max_auto_runs",
                f"{br.max_auto_runs} over {partitions} partitions gives each partition "
                f"floor({br.max_auto_runs}/{partitions}) = 0 automatic runs per window, so "
                f"no action ever runs automatically; set at least {partitions} "
                "(the guard splits the budget per partition)",
            )
        ]
    usable = per_partition * partitions
    if usable < br.max_auto_runs:
        return [
            PolicyWarning(
                f"{at}.blast_radius.max_auto_runs",
                f"only {usable} of {br.max_auto_runs} automatic runs per window can happen "
                f"(floor({br.max_auto_runs}/{partitions}) per partition x {partitions}); "
                f"a multiple of {partitions} uses all of it",
            )
        ]
    return []


def _mode_warnings(at: str, wf: Workflow) -> list[PolicyWarning]:
    found: list[PolicyWarning] = []
    if wf.phase == BOUNDED and not any(r.mode == "auto" for r in wf.actions.values()):
        found.append(
            PolicyWarning(
                f"{at}.phase",
                "bounded, but no action is auto: nothing runs automatically, every action "
                "goes to the queue as in assisted",
            )
        )
    for action, rule in wf.actions.items():
        if "on_out_of_bounds" in rule.model_fields_set and not rule.bounds:
            found.append(
                PolicyWarning(
                    f"{at}.actions.{action}.on_out_of_bounds",
                    "the rule has no bounds, so nothing is ever out of them",
                )
            )
    return found
