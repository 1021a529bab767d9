"""Given a history and labelled cases in the JSON form, then the evaluation report."""

from __future__ import annotations

from pathlib import Path

from processors.recommend.evaluate import evaluate, render
from schemas.events import ActionSpec, Event
from schemas.jsonform import dumps, loads
from tests.unit.test_recommend_support import default_policy, history, opened, resolved

POLICY = default_policy()


def evaluated_cases() -> list[Event]:
    return [
        opened(
            "e-1", "Locked out after password change", "My account is locked.", queue="identity"
        ),
        opened("e-2", "Charged twice", "My card was charged twice, please refund."),
        opened(
            "e-3", "SMS code not arriving", "The two-factor code never arrives.", queue="identity"
        ),
        opened("e-4", "Zebra", "Quantum xylophone.", queue="shipping"),
        opened("e-5", "Never resolved", "Still open."),
        resolved(
            "e-1",
            "password_reset",
            ActionSpec(name="reset_password", params={"method": "sms_code"}),
        ),
        resolved(
            "e-2",
            "double_charge",
            ActionSpec(name="refund_payment", params={"amount": 10.0, "order_id": "ORD-9"}),
        ),
        resolved(
            "e-3", "mfa_issue", ActionSpec(name="resend_mfa_enrollment", params={"factor": "sms"})
        ),
        resolved("e-4", "other"),
    ]


def through_jsonl(events: list[Event], path: Path) -> list[Event]:
    """What the CLI does with --history/--cases files: one JSON event per line."""
    path.write_bytes(b"\n".join(dumps(e) for e in events) + b"\n")
    return [loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_accuracy_and_hit_rate_beside_the_majority_class(tmp_path: Path) -> None:
    report = evaluate(
        through_jsonl(history(), tmp_path / "history.jsonl"),
        through_jsonl(evaluated_cases(), tmp_path / "cases.jsonl"),
        policy=POLICY,
    )
    assert (report.history_cases, report.unlabelled) == (9, 1)
    # password_reset and double_charge both have 3 cases: ties go alphabetically.
    assert (report.majority_category, report.majority_action) == ("double_charge", "refund_payment")
    overall = report.overall
    assert (overall.cases, overall.correct, overall.majority_correct) == (4, 3, 1)
    assert (overall.action_cases, overall.hits, overall.majority_hits) == (3, 3, 1)
    assert overall.accuracy == 0.75 and overall.hit_rate == 1.0
    assert list(report.per_category) == ["double_charge", "mfa_issue", "other", "password_reset"]
    other = report.per_category["other"]
    assert (other.cases, other.correct, other.action_cases, other.hit_rate) == (1, 0, 0, 0.0)
    assert report.per_category["double_charge"].majority_accuracy == 1.0


def test_evaluated_cases_never_teach_the_index() -> None:
    cases = [
        *evaluated_cases(),
        opened("e-6", "Zebra", "Quantum xylophone.", queue="shipping"),
        resolved("e-6", "other"),
    ]
    report = evaluate(history(), cases, policy=POLICY)
    assert report.per_category["other"].correct == 0  # e-4 did not teach e-6
    assert report.history_cases == 9


def test_the_report_renders_one_row_per_category_and_one_overall() -> None:
    text = render(evaluate(history(), evaluated_cases(), policy=POLICY))
    lines = text.splitlines()
    assert lines[0].startswith("history: 9 resolved cases")
    assert [line.split()[0] for line in lines[2:]] == [
        "double_charge",
        "mfa_issue",
        "other",
        "password_reset",
        "ALL",
    ]
    assert lines[-1].split()[1:4] == ["4", "0.750", "0.250"]


def test_empty_inputs_give_an_empty_report() -> None:
    report = evaluate([], [], policy=POLICY)
    assert (report.overall.cases, report.overall.accuracy, report.majority_category) == (
        0,
        0.0,
        None,
    )
