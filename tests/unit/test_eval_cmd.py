"""`casegate eval recommender` on the shipped demo pair: the baseline beats the majority class
by far (the figure the README quotes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from infra.settings import PROJECT_ROOT

DEMO = PROJECT_ROOT / "examples" / "demo"


def test_eval_prints_accuracy_far_above_the_majority_rate() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "console.cli",
            "eval",
            "recommender",
            "--history",
            str(DEMO / "history.jsonl"),
            "--cases",
            str(DEMO / "cases.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    row = re.search(r"ALL\s*│\s*(\d+)\s*│\s*([\d.]+)\s*│\s*([\d.]+)", result.stdout)
    assert row, result.stdout
    cases, accuracy, majority = int(row[1]), float(row[2]), float(row[3])
    assert cases > 250
    assert accuracy >= 0.8
    assert accuracy >= 3 * majority


def test_a_bad_history_line_is_reported_by_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_type": "CaseOpened"}\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "console.cli",
            "eval",
            "recommender",
            "--history",
            str(bad),
            "--cases",
            str(DEMO / "cases.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 2
    assert "line 1:" in result.stderr
