"""Given a policy document, when it is loaded, then it is valid or every problem is named
by its dotted path in the document."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from policy.loader import (
    DOCUMENT,
    LoadedPolicy,
    PolicyInvalid,
    default_policy_path,
    diff_policies,
    load_policy_file,
    load_policy_text,
)
from policy.model import MATCH_FIELDS, LlmRecommender, Policy

DEFAULT_TEXT = default_policy_path().read_text(encoding="utf-8")
Doc = dict[str, Any]


def mutated(change: Callable[[Doc], object]) -> str:
    """The default policy, parsed, changed by `change`, and dumped back to YAML."""
    doc = yaml.safe_load(DEFAULT_TEXT)
    change(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def errors_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text(text)
    return caught.value.errors


# --- the default policy ---------------------------------------------------------------


def test_default_policy_loads_with_version_and_sha256_of_its_text() -> None:
    loaded = load_policy_file(default_policy_path())

    assert loaded.version == loaded.policy.version == "2026.11.1"
    assert loaded.sha256 == hashlib.sha256(DEFAULT_TEXT.encode()).hexdigest()
    assert loaded.text == DEFAULT_TEXT


def test_default_policy_has_one_workflow_in_each_phase() -> None:
    policy = load_policy_file(default_policy_path()).policy

    phases = {name: wf.phase for name, wf in policy.workflows.items()}

    assert phases == {"identity_access": "bounded", "billing": "assisted", "shipping": "shadow"}


def test_default_policy_prohibits_close_account_everywhere_and_hides_customer() -> None:
    policy = load_policy_file(default_policy_path()).policy

    assert all(wf.actions["close_account"].mode == "prohibited" for wf in policy.workflows.values())
    assert not any(f.startswith("customer") for f in policy.model_visibility.fields)


def test_default_policy_binds_order_facts_to_the_case() -> None:
    catalog = load_policy_file(default_policy_path()).policy.catalog

    bound = {
        (action.name, name): spec.from_case
        for action in catalog.values()
        for name, spec in action.params.items()
        if spec.from_case is not None
    }

    assert bound == {
        ("refund_payment", "amount"): "attributes.amount",
        ("refund_payment", "order_id"): "attributes.order_id",
        ("reship_order", "order_id"): "attributes.order_id",
        ("update_address", "order_id"): "attributes.order_id",
    }


@pytest.mark.parametrize(
    "path", ["attributes.order_id", "customer.id", "queue", "issue_class", "attributes.order-ref"]
)
def test_a_parameter_may_bind_a_map_entry_or_a_routing_field(path: str) -> None:
    text = mutated(_set("catalog.refund_payment.params.order_id.from_case", path))

    spec = load_policy_text(text).policy.catalog["refund_payment"].params["order_id"]

    assert spec.from_case == path


def test_entries_know_their_names() -> None:
    policy = load_policy_file(default_policy_path()).policy

    assert policy.workflows["billing"].name == "billing"
    assert policy.action("refund_payment") is policy.catalog["refund_payment"]
    assert policy.action("teleport") is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"queue": "identity"}, "identity_access"),
        ({"queue": "billing", "channel": "email"}, "billing"),
        ({"queue": "shipping"}, "shipping"),
        ({"queue": "legal"}, None),
        ({"queue": None}, None),
    ],
    ids=["identity", "billing", "shipping", "no-such-queue", "queue-missing"],
)
def test_workflow_for_matches_on_case_fields(
    fields: dict[str, str | None], expected: str | None
) -> None:
    policy = load_policy_file(default_policy_path()).policy

    found = policy.workflow_for(fields)

    assert (found.name if found else None) == expected


def test_workflow_for_takes_the_first_match_in_document_order() -> None:
    def narrow_billing(doc: Doc) -> None:
        refunds = {**doc["workflows"]["billing"], "match": {"queue": "billing", "team": "refunds"}}
        doc["workflows"] = {"refunds": refunds, **doc["workflows"]}

    policy = load_policy_text(mutated(narrow_billing)).policy

    def found(team: str | None) -> str | None:
        workflow = policy.workflow_for({"queue": "billing", "team": team})
        return workflow.name if workflow else None

    assert found("refunds") == "refunds"
    assert found("tier1") == "billing"
    # A missing field never satisfies a rule on it.
    assert found(None) == "billing"


def test_no_workflow_may_match_on_the_models_category() -> None:
    """A category rule would let the case text, through the model, pick the workflow."""
    assert "category" not in MATCH_FIELDS
    rule = _set("workflows.billing.match", {"queue": "billing", "category": ["refund"]})

    [(path, message)] = errors_of(mutated(rule))

    assert path == "workflows.billing"
    assert "match on 'category' is refused" in message
    assert "model's prediction from the case text" in message
    with pytest.raises(PolicyInvalid, match=r"workflows\.billing: .*'category' is refused"):
        load_policy_text(mutated(rule))


def test_redaction_removes_personal_data_from_free_text() -> None:
    redaction = load_policy_file(default_policy_path()).policy.model_visibility.redaction

    text = (
        "Mail ann.lee@example.com, call +1 415 555 0100, card 4242 4242 4242 4242, "
        "order ORD-88213, account ACC-991 on 2026-11-27."
    )

    assert redaction.redact(text) == (
        "Mail [email], call [phone], card [card], order [order_id], account [account_id] "
        "on 2026-11-27."
    )


# --- validation errors, each with its path -----------------------------------------------


def _set(path: str, value: object) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[key]
        doc[last] = value

    return change


def _delete(path: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[key]
        del doc[last]

    return change


INVALID = [
    pytest.param(
        _set("workflows.billing.actions.refund_payment.mode", "always"),
        "workflows.billing.actions.refund_payment.mode",
        "Input should be 'suggest', 'approve', 'auto' or 'prohibited'",
        id="unknown-mode",
    ),
    pytest.param(
        _set("workflows.shipping.phase", "live"),
        "workflows.shipping.phase",
        "Input should be 'shadow', 'assisted' or 'bounded'",
        id="unknown-phase",
    ),
    pytest.param(
        _delete("workflows.shipping.phase"),
        "workflows.shipping.phase",
        "Field required",
        id="missing-phase",
    ),
    pytest.param(
        _set("workflows.billing.approval_tll_s", 60),
        "workflows.billing.approval_tll_s",
        "Extra inputs are not permitted",
        id="misspelt-key",
    ),
    pytest.param(
        _set("workflows.billing.actions.teleport", {"mode": "approve"}),
        "workflows.billing.actions.teleport",
        "unknown catalog action 'teleport'",
        id="workflow-action-not-in-catalog",
    ),
    pytest.param(
        _set("workflows.billing.actions.refund_payment.mode", "auto"),
        "workflows.billing.actions.refund_payment.mode",
        "auto needs a catalog action with approvals.count 0",
        id="auto-needs-no-approval",
    ),
    pytest.param(
        _set("workflows.billing.actions.refund_payment.bounds", {"amount": {"max": 900}}),
        "workflows.billing.actions.refund_payment.bounds.amount.max",
        "900 is above the catalog max 500",
        id="bound-wider-than-catalog",
    ),
    pytest.param(
        _set("workflows.billing.actions.change_plan.bounds", {"plan": {"values": ["gold"]}}),
        "workflows.billing.actions.change_plan.bounds.plan.values",
        "gold not among the catalog values",
        id="bound-value-not-in-catalog",
    ),
    pytest.param(
        _set("workflows.billing.actions.refund_payment.bounds", {"currency": {"max": 1}}),
        "workflows.billing.actions.refund_payment.bounds.currency",
        "refund_payment has no parameter 'currency'",
        id="bound-on-unknown-param",
    ),
    pytest.param(
        _set("catalog.change_plan.rollback.action", "undo_plan"),
        "catalog.change_plan.rollback.action",
        "unknown catalog action 'undo_plan'",
        id="rollback-action-missing",
    ),
    pytest.param(
        _set("catalog.change_plan.rollback", None),
        "catalog.change_plan",
        "a reversible action needs a rollback",
        id="reversible-without-rollback",
    ),
    pytest.param(
        _set("catalog.refund_payment.approvals.roles", ["supervisor", "cfo"]),
        "catalog.refund_payment.approvals.roles",
        "unknown role 'cfo'",
        id="approval-role-missing",
    ),
    pytest.param(
        _set("catalog.refund_payment.approvals.roles", ["agent"]),
        "catalog.refund_payment.approvals.roles",
        "lacks permission 'billing.refund'",
        id="approval-role-without-permission",
    ),
    pytest.param(
        _set("catalog.refund_payment.params.order_id.pattern", "ORD-(\\d+"),
        "catalog.refund_payment.params.order_id",
        "invalid regular expression",
        id="param-pattern-does-not-compile",
    ),
    pytest.param(
        _set("catalog.refund_payment.params.order_id.from_case", "attributes"),
        "catalog.refund_payment.params.order_id.from_case",
        "names the whole attributes map",
        id="bind-to-a-whole-map",
    ),
    pytest.param(
        _set("catalog.refund_payment.params.order_id.from_case", "order.id"),
        "catalog.refund_payment.params.order_id.from_case",
        "unknown case field 'order'",
        id="bind-to-an-unknown-field",
    ),
    pytest.param(
        _set("catalog.refund_payment.params.order_id.from_case", "queue.name"),
        "catalog.refund_payment.params.order_id.from_case",
        "only customer and attributes take a sub-key",
        id="bind-below-a-top-field",
    ),
    pytest.param(
        _set("catalog.refund_payment.params.order_id.from_case", "attributes.a.b"),
        "catalog.refund_payment.params.order_id.from_case",
        "one level only",
        id="bind-two-levels-down",
    ),
    pytest.param(
        _set("catalog.refund_payment.params.amount.from_case", "description"),
        "catalog.refund_payment.params.amount.from_case",
        "free text written by the customer cannot bind",
        id="bind-to-free-text",
    ),
    pytest.param(
        _set("catalog.change_plan.params.plan", {"type": "enum"}),
        "catalog.change_plan.params.plan",
        "needs a non-empty list of values",
        id="enum-without-values",
    ),
    pytest.param(
        _set("catalog.reship_order.adapter", {"kind": "http"}),
        "catalog.reship_order.adapter",
        "an http adapter needs a url",
        id="http-adapter-without-url",
    ),
    pytest.param(
        _set("model_visibility.redaction.custom.order_id", "ORD-[\\d+"),
        "model_visibility.redaction.custom",
        "order_id: invalid regular expression",
        id="redaction-regex-does-not-compile",
    ),
    pytest.param(
        _set("model_visibility.fields", ["subject", "secrets"]),
        "model_visibility.fields",
        "unknown case field 'secrets'",
        id="unknown-visible-field",
    ),
    pytest.param(
        _set("audit.required_outcomes", ["GuardrailDecided:approved"]),
        "audit.required_outcomes",
        "unknown outcome 'approved' for GuardrailDecided",
        id="unknown-audit-outcome",
    ),
    pytest.param(
        _set("workflows.billing.recommender", {"kind": "llm", "model": "m"}),
        "workflows.billing.recommender.prompt_version",
        "Field required",
        id="llm-without-prompt-version",
    ),
    pytest.param(
        _delete("workflows.identity_access.blast_radius"),
        "workflows.identity_access.blast_radius",
        "required when an action is auto",
        id="auto-without-blast-radius",
    ),
    pytest.param(
        _set("workflows.billing.match", {"region": "eu"}),
        "workflows.billing",
        "match on unknown case field(s) region",
        id="match-on-unknown-field",
    ),
]


@pytest.mark.parametrize(("change", "path", "message"), INVALID)
def test_each_validation_error_reports_its_dotted_path(
    change: Callable[[Doc], None], path: str, message: str
) -> None:
    errors = errors_of(mutated(change))

    assert any(p == path and message in m for p, m in errors), errors


def test_all_cross_section_problems_are_reported_together() -> None:
    def two_problems(doc: Doc) -> None:
        doc["catalog"]["change_plan"]["rollback"]["action"] = "undo_plan"
        doc["workflows"]["billing"]["actions"]["teleport"] = {"mode": "approve"}

    paths = [path for path, _ in errors_of(mutated(two_problems))]

    assert paths == ["catalog.change_plan.rollback.action", "workflows.billing.actions.teleport"]


def test_yaml_syntax_error_reports_line_and_column() -> None:
    errors = errors_of("version: '1'\nroles:\n  agent: [\n")

    assert len(errors) == 1
    assert errors[0][0] == DOCUMENT
    assert "line 4, column 1" in errors[0][1]


def test_duplicate_key_is_an_error_not_a_silent_overwrite() -> None:
    text = DEFAULT_TEXT.replace("workflows:\n", "workflows:\n  billing: {phase: shadow}\n")

    [(path, message)] = errors_of(text)

    assert path == DOCUMENT
    assert "duplicate key 'billing'" in message
    assert "line" in message


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    assert errors_of("- just\n- a list\n") == [(DOCUMENT, "a policy must be a YAML mapping")]


def test_policy_invalid_message_lists_path_and_message() -> None:
    with pytest.raises(PolicyInvalid, match=r"workflows\.shipping\.phase: Field required"):
        load_policy_text(mutated(_delete("workflows.shipping.phase")))


def test_llm_recommender_settings_are_typed() -> None:
    text = mutated(
        _set(
            "workflows.billing.recommender",
            {
                "kind": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt_version": "billing-v3",
                "temperature": 0.2,
                "timeout_s": 15,
                "max_retries": 2,
            },
        )
    )

    recommender = load_policy_text(text).policy.workflows["billing"].recommender

    assert recommender == LlmRecommender(
        model="openai/gpt-4o-mini",
        prompt_version="billing-v3",
        temperature=0.2,
        timeout_s=15,
        max_retries=2,
    )


# --- diff --------------------------------------------------------------------------------


def _default() -> LoadedPolicy:
    return load_policy_file(default_policy_path())


def test_diff_of_identical_policies_is_empty() -> None:
    assert diff_policies(_default(), _default().policy) == []


def test_diff_names_phase_mode_bound_and_action_changes() -> None:
    def promote_billing(doc: Doc) -> None:
        doc["version"] = "2026.12.1"
        billing = doc["workflows"]["billing"]
        billing["phase"] = "bounded"
        billing["actions"]["refund_payment"]["bounds"]["amount"]["max"] = 150
        billing["actions"]["change_plan"]["mode"] = "prohibited"
        del billing["actions"]["escalate_to_specialist"]
        doc["workflows"]["shipping"]["actions"]["escalate_to_specialist"] = {"mode": "approve"}
        billing["actions"]["resend_mfa_enrollment"] = {"mode": "suggest"}

    changes = diff_policies(_default(), load_policy_text(mutated(promote_billing)))

    assert changes == [
        "version: 2026.11.1 -> 2026.12.1",
        "workflows.billing.phase: assisted -> bounded",
        "workflows.billing.actions.refund_payment.bounds.amount.max: 200 -> 150",
        "workflows.billing.actions.change_plan.mode: approve -> prohibited",
        "workflows.billing.actions.escalate_to_specialist: removed",
        "workflows.billing.actions.resend_mfa_enrollment: added (mode suggest)",
        "workflows.shipping.actions.escalate_to_specialist.mode: suggest -> approve",
    ]


def test_diff_reports_added_workflow_and_list_changes() -> None:
    def add(doc: Doc) -> None:
        doc["workflows"]["returns"] = {"match": {"queue": "returns"}, "phase": "shadow"}
        doc["model_visibility"]["fields"] = [*doc["model_visibility"]["fields"][:-1], "team"]

    changes = diff_policies(_default(), load_policy_text(mutated(add)))

    assert changes == [
        "workflows.returns: added (phase shadow)",
        "model_visibility.fields: added team; removed attributes.product",
    ]


def test_policy_is_immutable() -> None:
    policy: Policy = _default().policy

    with pytest.raises(ValueError, match="frozen"):
        policy.version = "x"  # type: ignore[misc]
