"""Given a history and labelled cases in the JSON form or as CSV, then the evaluation report."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.recommend.evaluate import (
    Row,
    evaluate,
    expected_calibration_error,
    macro_f1,
    read_labelled_csv,
    render,
    split_cases,
)
from schemas.events import ActionSpec, CaseOpened, CaseResolved, Event
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
    assert report.model_version is not None
    # password_reset and double_charge both have 3 cases: ties go alphabetically.
    assert (report.majority_category, report.majority_action) == ("double_charge", "refund_payment")
    overall = report.overall
    assert (overall.cases, overall.correct, overall.majority_correct) == (4, 3, 1)
    assert (overall.action_cases, overall.hits, overall.majority_hits) == (3, 3, 1)
    assert list(report.per_category) == ["double_charge", "mfa_issue", "other", "password_reset"]
    other = report.per_category["other"]
    assert (other.cases, other.correct, other.action_cases, other.hit_rate) == (1, 0, 0, 0.0)


def test_the_quality_figures_of_a_small_evaluation() -> None:
    q = evaluate(history(), evaluated_cases(), policy=POLICY).quality
    # The unrelated case falls below the threshold; the three others are answered, right.
    assert (q.coverage, q.accuracy_at_threshold) == (0.75, 1.0)
    assert q.top3_accuracy == 0.75  # "other" is no category the history knows
    assert 0.0 < q.precision_at_5 < 1.0  # 9 cases: five similar ones span categories
    assert 0.0 <= q.ece <= 1.0 and 0.0 < q.macro_f1 < 1.0


def test_macro_f1_averages_per_category_f1_over_true_and_predicted_categories() -> None:
    def row(truth: str, predicted: str | None) -> Row:
        return Row(truth, predicted, 0.9, 0.5, (), frozenset(), None, ())

    rows = [row("a", "a"), row("a", "b"), row("b", "b"), row("c", None)]
    # a: tp 1, fn 1 -> 2/3; b: tp 1, fp 1 -> 2/3; c: tp 0 -> 0.
    assert macro_f1(rows) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_calibration_error_weighs_each_bins_gap_by_its_share_of_cases() -> None:
    # Bin 0.9: confidence 0.9, accuracy 1/2 -> gap 0.4 over half the cases; bin 0.5: exact.
    assert expected_calibration_error(
        [0.9, 0.9, 0.5, 0.5], [True, False, True, False]
    ) == pytest.approx(0.4 * 0.5)
    assert expected_calibration_error([1.0], [True]) == 0.0


def test_evaluated_cases_never_teach_the_memory() -> None:
    cases = [
        *evaluated_cases(),
        opened("e-6", "Zebra", "Quantum xylophone.", queue="shipping"),
        resolved("e-6", "other"),
    ]
    report = evaluate(history(), cases, policy=POLICY)
    assert report.per_category["other"].correct == 0  # e-4 did not teach e-6
    assert report.history_cases == 9


def test_the_report_renders_one_row_per_category_one_overall_and_the_figures() -> None:
    text = render(evaluate(history(), evaluated_cases(), policy=POLICY))
    lines = text.splitlines()
    assert lines[0].startswith("history: 9 labelled cases")
    assert [line.split()[0] for line in lines[2:-1]] == [
        "double_charge",
        "mfa_issue",
        "other",
        "password_reset",
        "ALL",
    ]
    assert lines[-2].split()[1:4] == ["4", "0.750", "0.250"]
    assert lines[-1].startswith("macro-F1 ") and "calibration error" in lines[-1]


def test_empty_inputs_give_an_empty_report() -> None:
    report = evaluate([], [], policy=POLICY)
    assert (report.overall.cases, report.overall.accuracy, report.majority_category) == (
        0,
        0.0,
        None,
    )


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["text,category,action", *(f'"{t}",{c},{a}' for t, c, a in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_labelled_csv_reads_as_opened_and_resolved_cases(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "train.csv",
        [("My card was charged twice", "double_charge", "refund_payment"), ("Hi, x", "other", "")],
    )
    events = read_labelled_csv(path)
    assert [type(e) for e in events] == [CaseOpened, CaseResolved, CaseOpened, CaseResolved]
    first, resolution = events[0], events[1]
    assert isinstance(first, CaseOpened) and isinstance(resolution, CaseResolved)
    assert (first.case_id, first.description, first.subject) == (
        "train-000001",
        "My card was charged twice",
        "",
    )
    assert resolution.actions_taken == (ActionSpec(name="refund_payment", params={}),)
    assert events[3].actions_taken == ()  # type: ignore[attr-defined]
    assert read_labelled_csv(path) == events  # ids and times derive from the file


def test_a_csv_without_text_or_category_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("message,label\nhi,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing column"):
        read_labelled_csv(path)


def test_a_split_is_deterministic_keeps_cases_whole_and_holds_about_the_fraction() -> None:
    events = [e for i in range(400) for e in (opened(f"s-{i}", "a", "b"), resolved(f"s-{i}", "x"))]
    past, held = split_cases(events, 0.25)
    assert split_cases(events, 0.25) == (past, held)
    assert {e.case_id for e in past}.isdisjoint({e.case_id for e in held})
    assert len(past) + len(held) == len(events)
    assert 0.18 < len(held) / len(events) < 0.32
    with pytest.raises(ValueError):
        split_cases(events, 1.0)
