"""`python -m bench --quick` runs end to end on the real stack and reports every figure.

Only that the figures exist is checked, never their values: durations on a shared machine
prove nothing, and the benchmark itself never runs inside `make test` beyond this smoke.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.sandbox import child_env
from infra.settings import PROJECT_ROOT
from tests.stack import Stack

FIGURES = (
    "raw_consume",
    "raw_consume.cpu",
    "raw",
    "raw.cpu",
    "pipeline",
    "pipeline.2workers",
    "stage.intake.loop",
    "stage.intake.plain",
    "stage.recommend.loop",
    "stage.recommend.plain",
    "stage.guard.loop",
    "stage.guard.plain",
    "latency.p50",
    "latency.p95",
    "latency.p99",
    "latency.p99.9",
    "latency.idle_first",
    "replay",
    "replay.cpu",
    "memory.replay.peak_rss",
    "memory.replay.growth",
    "memory.intake.peak_rss",
    "memory.intake.growth",
    "memory.recommend.peak_rss",
    "memory.guard.peak_rss",
    "memory.readmodels.peak_rss",
    "memory.recommend.growth",
    "memory.guard.growth",
    "memory.readmodels.growth",
    # --quick measures the recommender at 500, 1k and 2k cases of history.
    "recommender.cpu_ms_per_case.1k",
    "recommender.fit_s.2k",
    "recommender.peak_rss_mb.2k",
    "recommender.redact_s.1mb",
)
RATIOS = (
    "pipeline / raw",
    "intake loop / plain",
    "recommend loop / plain",
    "guard loop / plain",
    "latency p99 (ms)",
    "latency p99.9 (ms)",
    "replay / raw_consume",
    "replay peak RSS (MB)",
    "recommender CPU per case (ms)",
    "recommender peak RSS (MB)",
    "redaction of 1 MB hostile text (s)",
)


def test_quick_bench_exits_0_and_writes_every_figure(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    # The bench makes (and drops) its own sandboxes on the stack the session uses.
    env = {**child_env(stack.base), "CASEGATE_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(FIGURES) <= set(report["figures"]), set(FIGURES) - set(report["figures"])
    for name in FIGURES:
        assert {"median", "min", "max", "runs"} <= set(report["figures"][name])
    assert set(RATIOS) <= set(report["ratios"])
    assert set(RATIOS) <= set(report["targets"])
    assert {"intake", "recommend", "guard", "readmodels", "replay"} <= set(report["memory"])
    # A quick run measures every phase, so every target gets a verdict (met or missed).
    assert all(t["met"] is not None for t in report["targets"].values())
