"""Workflow routing has one definition: every holder of a case's routing fields (the
opening event, the guard's facts, the recommender's view, the recorded Routing) yields
the same fields, and a workflow matches them by policy.routing alone."""

from __future__ import annotations

from dataclasses import fields

import pytest
from pydantic import ValidationError

from policy.facts import CaseFacts
from policy.model import Workflow
from policy.routing import MATCH_FIELDS, REFUSED_MATCH_FIELDS, matches, routing_fields
from processors.recommend.case_view import open_view
from schemas.events import Routing
from tests.unit.test_recommend_support import opened

OPENED = opened("c1", "Charged twice", "free text never routes", priority="high")


def test_the_recorded_routing_holds_exactly_the_match_fields() -> None:
    # schemas import no policy, so this pins the event record to the one definition.
    assert tuple(f.name for f in fields(Routing)) == MATCH_FIELDS


def test_every_holder_of_a_case_yields_the_same_routing_fields() -> None:
    view = open_view(OPENED)
    expected = routing_fields(OPENED)
    assert set(expected) == set(MATCH_FIELDS)
    assert CaseFacts.from_case_opened(OPENED).match_fields() == expected
    assert view.match_fields == expected
    assert view.routing.match_fields() == expected
    assert CaseFacts.from_routing("c1", view.routing).match_fields() == expected


@pytest.mark.parametrize(
    ("match", "hit"),
    [
        ({}, True),
        ({"queue": ("billing",)}, True),
        ({"queue": ("billing",), "channel": ("chat",)}, False),
        ({"issue_class": ("double_charge",)}, False),  # a null field never matches
        ({"priority": ("high", "urgent")}, True),
    ],
)
def test_a_workflow_matches_as_the_routing_rule_says(
    match: dict[str, tuple[str, ...]], hit: bool
) -> None:
    workflow = Workflow(name="wf", phase="shadow", match=match)
    fields_now = routing_fields(OPENED)
    assert matches(match, fields_now) is hit
    assert workflow.matches(fields_now) is hit


@pytest.mark.parametrize("field_name", [*REFUSED_MATCH_FIELDS, "subject", "customer"])
def test_a_workflow_cannot_match_on_anything_but_the_routing_fields(field_name: str) -> None:
    with pytest.raises(ValidationError, match=field_name):
        Workflow(name="wf", phase="shadow", match={field_name: ("x",)})
