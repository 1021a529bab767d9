"""Given the policy model, when the reference is generated and documents are validated,
then the checked-in reference is current, every field is in it, errors name what is
allowed, and settings that can never take effect are warned about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from policy.catalog import Effects
from policy.loader import PolicyInvalid, default_policy_path, load_policy_text
from policy.reference import REFERENCE_PATH, render
from policy.semantics import policy_warnings
from policy.shape import model_at, models
from policy.workflow import BlastRadius, LlmRecommender, Workflow

DEFAULT_TEXT = default_policy_path().read_text(encoding="utf-8")


def test_the_checked_in_reference_is_current() -> None:
    # Fails after any change to the policy model until `make docs` is run and committed.
    assert REFERENCE_PATH.read_text(encoding="utf-8") == render(), (
        "docs/policy-reference.md is not current: run `make docs` (casegate policy reference)"
    )


def test_every_field_has_a_row_with_a_description_and_every_model_an_example() -> None:
    text = render()

    for model in models():
        section = text.split(f"\n## {model.__name__}\n", 1)[1].split("\n## ", 1)[0]
        for key in model.model_fields:
            row = next(line for line in section.splitlines() if line.startswith(f"| `{key}` |"))
            assert not row.endswith("| — |"), f"{model.__name__}.{key} has no description"
        assert "```yaml" in section or model.__name__ == "Policy", f"{model.__name__}: example"


def test_allowed_values_defaults_and_examples_come_from_the_model() -> None:
    text = render()

    assert "one of `shadow`, `assisted`, `bounded`" in text
    assert "| `approval_ttl_s` | integer | `86400` | > 0 |" in text
    assert "max_auto_runs: 50" in text  # the example is the default policy's own
    assert "| `name` | string | its key in the document |" in text


def test_model_at_follows_maps_lists_and_tagged_unions() -> None:
    assert model_at(("catalog", "reset_password", "effects")) is Effects
    assert model_at(("workflows", "billing")) is Workflow
    assert model_at(("workflows", "billing", "blast_radius")) is BlastRadius
    assert model_at(("workflows", "billing", "recommender", "llm")) is LlmRecommender
    assert model_at(("model_visibility", "fields", 0)) is None


def errors(change: Any) -> dict[str, str]:
    doc = yaml.safe_load(DEFAULT_TEXT)
    change(doc)
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text(yaml.safe_dump(doc, sort_keys=False))
    return dict(caught.value.errors)


def test_a_misspelt_key_lists_the_allowed_keys_and_points_at_the_reference() -> None:
    found = errors(lambda d: d["catalog"]["reset_password"]["effects"].update(workflow_stat="x"))

    assert found["catalog.reset_password.effects.workflow_stat"] == (
        "unknown key (Extra inputs are not permitted); allowed: customer_state, assignment, "
        "entitlement, workflow_status (see docs/policy-reference.md#effects)"
    )


def test_a_missing_key_points_at_its_section() -> None:
    found = errors(lambda d: d["catalog"]["reset_password"].pop("risk"))

    assert found["catalog.reset_password.risk"] == (
        "Field required (see docs/policy-reference.md#action)"
    )


def policy_with(change: Any) -> Any:
    doc = yaml.safe_load(DEFAULT_TEXT)
    change(doc)
    return load_policy_text(yaml.safe_dump(doc, sort_keys=False)).policy


def test_a_budget_below_the_partition_count_is_warned_as_never_running() -> None:
    policy = policy_with(
        lambda d: d["workflows"]["identity_access"]["blast_radius"].update(max_auto_runs=4)
    )

    found = {w.path: w.message for w in policy_warnings(policy, partitions=6)}

    message = found["workflows.identity_access.blast_radius.max_auto_runs"]
    assert "floor(4/6) = 0" in message and "set at least 6" in message
    assert policy_warnings(policy, partitions=4) == []  # one run per partition: fine


def test_a_budget_not_a_multiple_of_the_partitions_says_how_much_is_usable() -> None:
    policy = policy_with(lambda d: None)

    (warning,) = policy_warnings(policy, partitions=6)

    assert warning.path == "workflows.identity_access.blast_radius.max_auto_runs"
    assert "only 48 of 50" in warning.message


def test_unused_limits_unreachable_workflows_and_idle_bounded_phases_are_warned() -> None:
    def change(d: dict[str, Any]) -> None:
        d["workflows"]["identity_access"]["blast_radius"]["max_auto_runs"] = 48
        d["workflows"]["billing"]["blast_radius"] = {"max_auto_runs": 6, "window_s": 60}
        d["workflows"]["billing"]["actions"]["change_plan"]["on_out_of_bounds"] = "approve"
        d["workflows"]["shipping"]["match"] = {"queue": "identity", "team": "access"}
        d["workflows"]["shipping"]["phase"] = "bounded"

    found = {w.path for w in policy_warnings(policy_with(change), partitions=6)}

    assert found == {
        "workflows.billing.blast_radius",
        "workflows.billing.actions.change_plan.on_out_of_bounds",
        "workflows.shipping.match",
        "workflows.shipping.phase",
    }


@pytest.fixture
def small_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default policy with 4 automatic runs per window, on 6 partitions."""
    monkeypatch.setenv("CASEGATE_PARTITIONS", "6")
    path = tmp_path / "small-budget.yaml"
    path.write_text(DEFAULT_TEXT.replace("max_auto_runs: 50", "max_auto_runs: 4"))
    return path


def test_validate_prints_warnings_and_strict_refuses(small_budget: Path) -> None:
    path, runner = small_budget, CliRunner()

    lenient = runner.invoke(app, ["policy", "validate", str(path)])
    strict = runner.invoke(app, ["policy", "validate", "--strict", str(path)])

    assert lenient.exit_code == 0 and "warning: workflows.identity_access" in lenient.stderr
    assert strict.exit_code == 2 and "--strict; nothing done" in strict.stderr


def test_reference_check_fails_when_the_file_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "policy-reference.md"
    stale.write_text("# old\n")
    monkeypatch.setattr("policy.reference.REFERENCE_PATH", stale)

    result = CliRunner().invoke(app, ["policy", "reference", "--check"])

    assert result.exit_code == 1 and "is not current" in result.stderr


def test_publish_strict_refuses_a_policy_with_warnings_before_sending(small_budget: Path) -> None:
    result = CliRunner().invoke(app, ["policy", "publish", "--strict", str(small_budget)])

    # Refused before any connection to Kafka is made (there is no broker in unit tests).
    assert result.exit_code == 2
    assert "floor(4/6) = 0" in result.stderr and "nothing done" in result.stderr


def test_a_reference_to_an_unknown_name_lists_the_known_ones() -> None:
    def change(d: dict[str, Any]) -> None:
        d["workflows"]["billing"]["actions"]["teleport"] = {"mode": "approve"}
        d["catalog"]["refund_payment"]["approvals"]["roles"] = ["cfo"]

    found = errors(change)

    assert found["workflows.billing.actions.teleport"].startswith(
        "unknown catalog action 'teleport'; known: reset_password, resend_mfa_enrollment,"
    )
    assert found["catalog.refund_payment.approvals.roles"] == (
        "unknown role 'cfo'; known: agent, supervisor, finance_lead, admin"
    )
    audit = errors(lambda d: d["audit"]["required_outcomes"].append("Nope"))
    assert (
        "unknown event type 'Nope'; known: AccessReviewed, ApprovalCompleted,"
        in audit["audit.required_outcomes"]
    )
