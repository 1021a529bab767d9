"""infra/observability is importable as it is: every series the Grafana dashboard queries is
one that some casegate process exports, and the Prometheus scrape config names each
process's /metrics port."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from console.api.telemetry import RequestMetrics
from infra.settings import Settings
from infra.telemetry import METRICS_OFFSETS, metrics_port
from processors.metrics import LoopMetrics
from projections.metrics import ReadModelMetrics

FOLDER = Path(__file__).resolve().parents[2] / "infra" / "observability"
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


def exported() -> set[str]:
    """The sample names every process's metrics can export (labelled or not)."""
    # One registry per kind of process, as each process has its own.
    processor, readmodels, console = CollectorRegistry(), CollectorRegistry(), CollectorRegistry()
    LoopMetrics(processor, "approve", "casegate.", timed=("approvals",))
    ReadModelMetrics(readmodels, "casegate.")
    RequestMetrics(console)
    return {
        family.name + suffix
        for registry in (processor, readmodels, console)
        for family in registry.collect()
        for suffix in SUFFIXES[family.type]
    }


def queried() -> set[str]:
    dashboard = json.loads((FOLDER / "grafana-dashboard.json").read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", ())
        if "expr" in target
    ]
    assert len(exprs) >= 10, "the dashboard should query the pipeline's main series"
    return {name for expr in exprs for name in re.findall(r"\bcasegate_[a-z_]+", expr)}


def test_every_series_the_dashboard_queries_is_exported() -> None:
    missing = queried() - exported()
    assert not missing, f"the dashboard queries series no process exports: {sorted(missing)}"


def test_the_dashboard_covers_lag_dead_letters_and_latency() -> None:
    names = queried()
    for name in (
        "casegate_consumer_lag",
        "casegate_dead_letters_total",
        "casegate_handle_seconds_bucket",
        "casegate_readmodel_commit_seconds_bucket",
        "casegate_http_request_seconds_bucket",
    ):
        assert name in names


def test_the_scrape_config_names_every_process_port() -> None:
    config = yaml.safe_load((FOLDER / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    settings = Settings(metrics_port=9400)
    for component in METRICS_OFFSETS:
        assert f"127.0.0.1:{metrics_port(settings, component)}" in targets, component
