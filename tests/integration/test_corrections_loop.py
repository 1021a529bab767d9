"""Corrections count in shadow_alignment (issue 15, deliverable 3), on the real read models.

Given three resolved billing cases whose recommendation was change_plan — a1 approved as
recommended (and listed by upstream), o1 overridden with an escalation (which is what
upstream lists), r1 resolved as recommended and then reclassified — when
shadow_alignment is read, then a1 matches, o1 does not, and r1 is compared under its
corrected class.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from infra.settings import Settings
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    CaseResolved,
    Event,
    utc_now,
)
from tests.integration import console_story
from tests.integration.console_story import ESCALATE, PLAN
from tests.integration.helpers import audited, rows, running
from tests.integration.scenario import policy_event


def recommended(case: str, at: Any) -> list[Event]:
    """change_plan recommended for `case`, each case in a team of its own name (its segment)."""
    rec = f"r-{case}"
    return [
        console_story._opened(case, "billing", case, at, f"case {case}"),
        console_story._recommended(case, rec, PLAN, "plan_change", at, "billing"),
        console_story._decided(
            case, rec, "approval_required", "billing", "assisted", PLAN, at, 1, ("supervisor",)
        ),
    ]


def approved(case: str, at: Any, action: ActionSpec) -> ApprovalCompleted:
    return console_story.approval(case, f"r-{case}", ("sam",), action, at)


def resolved(case: str, at: Any, *actions: ActionSpec) -> CaseResolved:
    return console_story.resolved(case, at, "plan_change", actions)


def test_shadow_alignment_counts_approvals_overrides_and_reclassifications(
    settings: Settings,
) -> None:
    t0 = utc_now() - timedelta(hours=2)
    t1, t2 = t0 + timedelta(minutes=5), t0 + timedelta(minutes=10)
    events: list[Event] = [policy_event()]
    events += [*recommended("a1", t0), approved("a1", t1, PLAN), resolved("a1", t2, PLAN)]
    events += [
        *recommended("o1", t0),
        console_story.overridden("o1", "r-o1", ESCALATE, t1),
        approved("o1", t1, ESCALATE),
        resolved("o1", t2, ESCALATE),
    ]
    events += [
        *recommended("r1", t0),
        resolved("r1", t1, PLAN),
        console_story.reclassified("r1", t2, "double_charge"),
    ]
    console_story.publish(settings, events)
    with running(settings, ("projections.worker", "readmodels")):
        audited(settings, events, "the cases in audit_log")

    got = {
        r["team"]: r
        for r in rows(settings, "SELECT * FROM shadow_alignment WHERE workflow = 'billing'")
    }

    # a1: approved as recommended, and that is what was done: a match.
    assert _counts(got["a1"]) == ("plan_change", 1, 1, 1, 1)
    # o1: the operator chose another action, and that is what was done: no match.
    assert _counts(got["o1"]) == ("plan_change", 1, 1, 1, 0)
    # r1: compared under the class it was corrected to.
    assert _counts(got["r1"]) == ("double_charge", 1, 0, 1, 1)


def _counts(row: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("issue_class", "compared", "category_matches", "with_action", "action_matches")
    return tuple(row[k] for k in keys)
