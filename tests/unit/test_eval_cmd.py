"""`casegate eval recommender` on the shipped demo pair (the baseline beats the majority class
by far: the figures the README quotes), on a labelled CSV split by the command, and its
refusals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from infra.settings import PROJECT_ROOT

DEMO = PROJECT_ROOT / "examples" / "demo"


def run_eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "eval", "recommender", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=PROJECT_ROOT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"},
    )


def overall(stdout: str) -> tuple[int, float, float]:
    row = re.search(r"ALL\s*│\s*(\d+)\s*│\s*([\d.]+)\s*│\s*([\d.]+)", stdout)
    assert row, stdout
    return int(row[1]), float(row[2]), float(row[3])


def test_eval_prints_accuracy_far_above_the_majority_rate() -> None:
    result = run_eval(
        "--history", str(DEMO / "history.jsonl"), "--cases", str(DEMO / "cases.jsonl")
    )
    assert result.returncode == 0, result.stderr
    cases, accuracy, majority = overall(result.stdout)
    assert cases > 250
    assert accuracy >= 0.8
    assert accuracy >= 3 * majority
    figures = re.search(r"macro-F1 ([\d.]+).*coverage ([\d.]+).*error ([\d.]+)", result.stdout)
    assert figures, result.stdout
    assert float(figures[1]) >= 0.8 and float(figures[2]) > 0.5 and float(figures[3]) < 0.2


TOPICS = {
    "card_arrival": ["my new card has not arrived", "still waiting for the card to arrive"],
    "refund": ["please refund my purchase", "i want my money back for this order"],
    "pin_blocked": ["my pin is blocked", "i entered the wrong pin and it is locked"],
}


def test_a_labelled_csv_is_evaluated_on_a_deterministic_split(tmp_path: Path) -> None:
    rows = ["text,category"]
    for category, phrases in TOPICS.items():
        for i in range(40):
            rows.append(f'"{phrases[i % 2]} (ref {i}), thanks",{category}')
    path = tmp_path / "labelled.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    first = run_eval("--history", str(path), "--split", "0.25")
    assert first.returncode == 0, first.stderr
    cases, accuracy, _ = overall(first.stdout)
    assert 15 < cases < 45 and accuracy >= 0.9
    assert "25% of labelled.csv" in first.stdout
    assert overall(run_eval("--history", str(path), "--split", "0.25").stdout) == (
        cases,
        accuracy,
        overall(first.stdout)[2],
    )


def test_either_cases_or_a_split_is_required() -> None:
    history = str(DEMO / "history.jsonl")
    assert run_eval("--history", history).returncode == 2
    both = run_eval("--history", history, "--cases", history, "--split", "0.5")
    assert both.returncode == 2 and "either --cases" in both.stderr


def test_a_bad_history_line_is_reported_by_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_type": "CaseOpened"}\n')
    result = run_eval("--history", str(bad), "--cases", str(DEMO / "cases.jsonl"))
    assert result.returncode == 2
    assert "line 1:" in result.stderr
