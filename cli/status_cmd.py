"""`casegate status [--watch]`: every component's health, lag, rates and last error, on one
screen, from the processes' own /metrics endpoints (see infra.telemetry)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated

import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from cli.tables import Col, fitted
from infra.settings import Settings
from infra.telemetry import METRICS_OFFSETS, metrics_port

out = Console()
INSTANCES = 3  # instances probed per component (0, 1, 2)


@dataclass
class Scrape:
    """One process's answer: summed samples by metric name, and a few by label."""

    component: str
    instance: int
    port: int
    at: float
    totals: dict[str, float] = field(default_factory=dict)
    labelled: dict[str, dict[str, float]] = field(default_factory=dict)


def scrape(
    settings: Settings, component: str, instance: int, timeout_s: float = 1.0
) -> Scrape | None:
    """The process's metrics, or None when nothing answers on its port."""
    port = metrics_port(settings, component, instance)
    if port is None:
        return None
    url = f"http://{settings.metrics_host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode()
    except OSError:
        return None
    got = Scrape(component, instance, port, time.monotonic())
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            got.totals[sample.name] = got.totals.get(sample.name, 0.0) + sample.value
            for label in ("version", "reason", "outcome"):
                if label in sample.labels:
                    by = got.labelled.setdefault(f"{sample.name}:{label}", {})
                    by[sample.labels[label]] = by.get(sample.labels[label], 0.0) + sample.value
    return got


def scrape_all(settings: Settings) -> list[Scrape]:
    found = []
    for component in METRICS_OFFSETS:
        for instance in range(INSTANCES):
            got = scrape(settings, component, instance)
            if got is not None:
                found.append(got)
    return found


def _rate(now: Scrape, before: Scrape | None, name: str) -> str:
    if before is None:
        return "…"
    seconds = now.at - before.at
    delta = now.totals.get(name, 0.0) - before.totals.get(name, 0.0)
    return f"{delta / seconds:,.0f}/s" if seconds > 0 else "…"


STATUS_COLS = (
    Col("component", justify="left"),
    Col("port", justify="left"),
    Col("health", justify="left"),
    Col("in", meaning="records consumed per second"),
    Col("out", meaning="records produced per second"),
    Col("lag"),
    Col("dead letters", "dl", "dead letters"),
    Col("aborted", "abrt", "aborted transactions"),
    Col("policy", justify="left"),
    Col("last error", "last err", "last dead letter or aborted transaction", justify="left"),
)


def render(
    settings: Settings, now: Iterable[Scrape], before: dict[tuple[str, int], Scrape]
) -> RenderableType:
    rows: list[tuple[str, ...]] = []
    seen = {(s.component, s.instance): s for s in now}
    for component in METRICS_OFFSETS:
        mine = [s for (c, _), s in sorted(seen.items()) if c == component]
        if not mine:
            rows.append(
                (component, str(metrics_port(settings, component)), "[red]down[/]", *[""] * 7)
            )
            continue
        for s in mine:
            prev = before.get((s.component, s.instance))
            lag = s.totals.get("casegate_consumer_lag", 0.0)
            versions = s.labelled.get("casegate_policy_version_info:version", {})
            last = s.totals.get("casegate_last_error_timestamp_seconds")
            outcomes = s.labelled.get("casegate_transactions_total:outcome", {})
            rows.append(
                (
                    f"{component}-{s.instance}",
                    str(s.port),
                    "[green]up[/]" if lag < 10_000 else "[yellow]behind[/]",
                    _rate(s, prev, "casegate_records_consumed_total"),
                    _rate(s, prev, "casegate_records_produced_total"),
                    f"{lag:,.0f}",
                    f"{s.totals.get('casegate_dead_letters_total', 0.0):,.0f}",
                    f"{outcomes.get('aborted', 0.0):,.0f}",
                    ", ".join(v for v, on in versions.items() if on) or "—",
                    _ago(last) if last else "—",
                )
            )
    table, legend = fitted(
        out, STATUS_COLS, rows, title="casegate status (from each process's /metrics)"
    )
    return Group(table, Text("; ".join(legend))) if legend else table


def _ago(at: float) -> str:
    seconds = time.time() - at
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.0f} h ago"


def status(
    watch: Annotated[bool, typer.Option("--watch", help="refresh until Ctrl-C")] = False,
    every: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
) -> None:
    """Every component's health, lag, rates and last error (from their /metrics endpoints)."""
    settings = Settings()
    if not settings.metrics_port:
        out.print("[red]metrics are off (CASEGATE_METRICS_PORT=0)[/]: nothing to ask.")
        raise typer.Exit(2)
    before = {(s.component, s.instance): s for s in scrape_all(settings)}
    if not watch:
        time.sleep(min(every, 1.0))  # a second look, for the rates
        now = scrape_all(settings)
        out.print(render(settings, now, before))
        if not now:
            out.print(
                "Nothing answers: start the stack with `casegate run` (or `make run`); a "
                "process serves /metrics on CASEGATE_METRICS_PORT + its offset (README)."
            )
            raise typer.Exit(1)
        return
    with Live(render(settings, [], {}), console=out, refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(every)
                now = scrape_all(settings)
                live.update(render(settings, now, before))
                before = {(s.component, s.instance): s for s in now}
        except KeyboardInterrupt:
            return
