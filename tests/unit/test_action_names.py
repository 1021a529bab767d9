"""Given the one action-name rule (schemas.names), when a name reaches the catalog, an
override or upstream's CaseResolved, then all three accept and refuse the same names."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from cli.produce import InvalidFile, read_events
from console.api.models import OverrideAction
from policy.catalog import ActionName
from policy.loader import PolicyInvalid, default_policy_path, load_policy_text
from processors.intake_rules import KnownCase, Verdict, check
from schemas.events import ActionSpec, CaseResolved
from schemas.jsonform import dumps
from schemas.names import ACTION_NAME_MAX, action_name_problem

UPSTREAM_NAMES = ["query:balance", "crm.refund", "close-ticket", "Refund_v2", "a", "x" * 128]
REFUSED_NAMES = ["", "1st_reply", "send reply", "jira/close", "é_action", "a\n", "x" * 129]


@pytest.mark.parametrize("name", UPSTREAM_NAMES + REFUSED_NAMES)
def test_catalog_type_and_rule_agree_on_every_name(name: str) -> None:
    try:
        TypeAdapter(ActionName).validate_python(name)
        catalog_ok = True
    except ValidationError:
        catalog_ok = False

    assert catalog_ok == (action_name_problem(name) is None) == (name in UPSTREAM_NAMES)


def test_refusal_names_the_rule() -> None:
    problem = action_name_problem("send reply")

    assert problem is not None and "letters, digits, '_', '.', ':' or '-'" in problem
    assert f"at most {ACTION_NAME_MAX}" in problem


def policy_with_upstream_action(name: str) -> str:
    doc: dict[str, Any] = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    doc["catalog"][name] = dict(doc["catalog"]["escalate_to_specialist"])
    doc["workflows"]["shipping"]["actions"][name] = {"mode": "suggest"}
    return yaml.safe_dump(doc, sort_keys=False)


def test_a_policy_catalogs_upstream_names_as_they_are() -> None:
    policy = load_policy_text(policy_with_upstream_action("query:order-status")).policy

    assert policy.catalog["query:order-status"].name == "query:order-status"
    assert policy.workflows["shipping"].actions["query:order-status"].mode == "suggest"


def test_a_catalog_name_outside_the_rule_is_refused_at_its_path() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text(policy_with_upstream_action("send reply"))

    errors = dict(caught.value.errors)
    assert "catalog.send reply.[key]" in errors
    assert "workflows.shipping.actions.send reply.[key]" in errors
    assert "a letter, then letters, digits" in errors["catalog.send reply.[key]"]


def test_an_override_may_name_an_upstream_style_action() -> None:
    assert OverrideAction(action="query:balance").action == "query:balance"
    with pytest.raises(ValidationError):
        OverrideAction(action="send reply")


def resolved(*names: str) -> CaseResolved:
    return CaseResolved(
        event_id="e9",
        case_id="c1",
        occurred_at=datetime(2026, 11, 27, tzinfo=UTC),
        resolved_by="ann",
        resolution_code="done",
        category="billing",
        actions_taken=tuple(ActionSpec(name=n, params={}) for n in names),
    )


def test_intake_accepts_upstream_names_and_refuses_others_with_the_rule() -> None:
    known = KnownCase("open", "e1")

    assert check(known, resolved("query:balance", "crm.refund"), "c1").verdict is Verdict.ACCEPT
    refused = check(known, resolved("query:balance", "send reply"), "c1")
    assert refused.verdict is Verdict.REJECT
    assert refused.reason.startswith("invalid_action_name: actions_taken[1]:")


def test_produce_file_names_the_line_with_a_bad_action_name(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    lines = [dumps(resolved("query:balance")), dumps(resolved("send reply"))]
    path.write_bytes(b"\n".join(lines) + b"\n")

    with pytest.raises(InvalidFile) as caught:
        read_events(path)

    assert [(e.line, e.message.split(":")[0]) for e in caught.value.errors] == [
        (2, "invalid_action_name")
    ]
    assert json.loads(lines[0])["actions_taken"][0]["name"] == "query:balance"
