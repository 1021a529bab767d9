"""`python -m bench [--quick]`: every figure as median (min to max) of several runs, and as a
ratio to a baseline measured in the same run; targets checked and stated plainly.

Order: raw baselines, each stage alone (on the processors' loop and in the plain baseline
loop running the same handler), the pipeline with one worker per processor (with latency
at half its measured rate, and after an idle period, while its processes are still up) and
with two, then the replay (in a process of its own, so its memory over the whole replay is
sampled), then the recommender's CPU per case and memory at 5k, 20k and 50k cases of
history (bench.recommender; no broker).
Every child process is stopped and every sandbox dropped, whatever happens.

Sizes come from flags, or from ``BENCH_<FLAG>`` environment variables (so
``make bench BENCH_REPLAY_EVENTS=200000`` works); ``--quick`` overrides both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console

from bench import latency, raw, recommender, replayer, workload
from bench.latency import Listener
from bench.measure import WARM_FRACTION, Figures, Target, Trend, bytes_per_unit, growth, rss_at
from bench.procs import LOGS, Child, Sampler, running
from bench.progress import Progress
from bench.report import write_report
from bench.stages import Run, pipeline, stage
from infra import sandbox
from infra.bootstrap import services_up
from infra.kafka import common_config
from infra.secrets import install_event_id_key
from infra.settings import Settings
from schemas.codec import Codec

out = Console()

STAGES = (("intake", "cases"), ("recommend", "recommendations"), ("guard", "decisions"))
TARGETS = (
    Target("pipeline / raw", ">=", 0.04),
    *(Target(f"{name} loop / plain", ">=", 0.7) for name, _ in STAGES),
    Target("latency p99 (ms)", "<=", 100.0),
    Target("latency p99.9 (ms)", "<=", 250.0),
    Target("replay / raw_consume", ">=", 0.1),
    Target("replay peak RSS (MB)", "<=", 250.0),
    # At the second history size (20k) and at the largest (50k); --quick: smaller ones.
    Target("recommender CPU per case (ms)", "<=", 0.2),
    Target("recommender peak RSS (MB)", "<=", 400.0),
    Target("redaction of 1 MB hostile text (s)", "<=", 1.0),
)
PHASES = ("raw", "stages", "pipeline", "replay", "recommender")
# History sizes the recommender is measured at (bench.recommender); --quick: small ones.
RECOMMENDER_SIZES = (5_000, 20_000, 50_000)
QUICK_RECOMMENDER_SIZES = (500, 1_000, 2_000)


# Numeric size flags: (flag, type, default, help); each default may be overridden by the
# environment variable BENCH_<FLAG> (``--stage-events``: ``BENCH_STAGE_EVENTS``).
# The memory figure is defined on a 20,000-case run; the replay on a million events
# (once: its memory over the whole replay is sampled too).
SIZE_FLAGS: tuple[tuple[str, type[int] | type[float], int | float, str], ...] = (
    ("--runs", int, 3, "runs per figure"),
    ("--events", int, 20_000, "CaseOpened through the pipeline (raw baselines move as many)"),
    ("--stage-events", int, 5_000, "CaseOpened through each stage alone"),
    ("--replay-events", int, 1_000_000, "events the read models are rebuilt from"),
    (
        "--replay-runs",
        int,
        1,
        "replay runs (0: as many as --runs); one million-event run takes ~6 minutes",
    ),
    ("--history", int, 150, "resolved cases per queue"),
    ("--latency-s", float, 30.0, "seconds of paced load at half the pipeline's rate"),
    ("--idle-s", float, 60.0, "idle time before the first-event latency"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    for flag, kind, default, help_text in SIZE_FLAGS:
        env = "BENCH_" + flag.removeprefix("--").replace("-", "_").upper()
        parser.add_argument(
            flag, type=kind, default=kind(os.environ.get(env, default)), help=help_text
        )
    parser.add_argument(
        "--phases",
        default=os.environ.get("BENCH_PHASES", ",".join(PHASES)),
        help=f"comma-separated subset of {','.join(PHASES)} (figures of the others: not measured)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (default: results/bench-<UTC time>.json)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.events, args.stage_events, args.replay_events = 1, 400, 200, 3_000
        args.history, args.latency_s, args.idle_s = 20, 2.0, 2.0
        args.replay_runs, args.phases = 1, ",".join(PHASES)
        args.recommender_sizes = QUICK_RECOMMENDER_SIZES
    else:
        args.recommender_sizes = RECOMMENDER_SIZES
    args.replay_runs = args.replay_runs or args.runs
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    bench = Bench(args)
    bench.phases["setup"] = round(time.monotonic() - started, 1)
    out.print(
        f"[bold]casegate bench[/] — {args.events:,} pipeline / {args.stage_events:,} stage / "
        f"{args.replay_events:,} replay events, {args.runs} run(s) "
        f"({args.replay_runs} for the replay); phases: {', '.join(args.phases)}"
    )
    failure: str | None = None
    try:
        for name in args.phases:
            out.print(f"{name} …")
            began = time.monotonic()
            bench.phase(name)()
            bench.phases[name] = round(time.monotonic() - began, 1)
            out.print(f"  {name} took {bench.phases[name]:.0f} s")
    except Exception as exc:  # keep what was measured; say plainly what failed
        failure = f"{type(exc).__name__}: {exc}"
        out.print(f"[bold red]bench failed:[/] {failure}")
    finally:
        out.print("cleaning up sandboxes …")
        began = time.monotonic()
        _destroy(bench.base, bench.admin, bench.made)
        bench.phases["cleanup"] = round(time.monotonic() - began, 1)

    figures = bench.figures

    def median(name: str) -> float:
        return figures[name].median if name in figures else float("nan")

    def ratio(a: str, b: str) -> float:
        return median(a) / median(b) if median(b) else float("nan")

    sizes = args.recommender_sizes
    cpu_at, rss_at_size = recommender.label(sizes[1]), recommender.label(sizes[-1])
    ratios = {
        "pipeline / raw": ratio("pipeline", "raw"),
        **{
            f"{name} loop / plain": ratio(f"stage.{name}.loop", f"stage.{name}.plain")
            for name, _ in STAGES
        },
        "latency p99 (ms)": median("latency.p99"),
        "latency p99.9 (ms)": median("latency.p99.9"),
        "replay / raw_consume": ratio("replay", "raw_consume"),
        "replay peak RSS (MB)": median("memory.replay.peak_rss"),
        "pipeline 2 workers / 1 worker": ratio("pipeline.2workers", "pipeline"),
        "recommender CPU per case (ms)": median(f"recommender.cpu_ms_per_case.{cpu_at}"),
        "recommender peak RSS (MB)": median(f"recommender.peak_rss_mb.{rss_at_size}"),
        "redaction of 1 MB hostile text (s)": median("recommender.redact_s.1mb"),
    }
    params = {
        **vars(args),
        "out": str(args.out),
        "replayed_events": bench.replayed,
        "history_cases": bench.opened_in_history,
        "phases_s": bench.phases,
        "elapsed_s": round(time.monotonic() - started, 1),
        "retried_runs": bench.retried,
        "failure": failure,
    }
    write_report(out, figures, ratios, TARGETS, bench.memory, params, args.out)
    if failure is not None:
        sys.exit(f"bench failed: {failure}")


T = TypeVar("T")
# What a broker or PostgreSQL restart under a run raises (another engineer's fault
# injection on the shared stack, say): the run is void and is made again.
TRANSIENT = (KafkaException, TimeoutError, RuntimeError, psycopg.OperationalError)
RETRIES = 3


class Bench:
    """The sandboxes, the workload (encoded once) and the figures of one bench run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = Settings()
        services_up(self.base, lambda line: None)
        install_event_id_key(self.base)
        self.admin = sandbox.server_admin_url(self.base)
        self.codec = Codec.load()
        self.made: list[Settings] = []
        self.figures = Figures()
        self.memory: dict[str, Trend] = {}
        self.phases: dict[str, float] = {}
        self.retried: list[str] = []
        self.replayed = 0
        history = workload.history_events(args.history)
        self.opened_in_history = sum(1 for e in history if e.event_type == "CaseOpened")
        self.history_events = len(history)
        # As upstream sends them: through intake.
        self.preamble = workload.encode(
            self.codec, [workload.policy_event(), *history], via_intake=True
        )
        self.cases = workload.encode(self.codec, workload.case_events(args.events), via_intake=True)

    def phase(self, name: str) -> Callable[[], None]:
        phases: dict[str, Callable[[], None]] = {
            "raw": self.raw,
            "stages": self.stages,
            "pipeline": self.pipeline,
            "replay": self.replay,
            "recommender": self.recommender,
        }
        return phases[name]

    def fresh(self, label: str, *records: list[workload.Encoded]) -> Settings:
        s = sandbox.create(self.base, self.admin, label)
        self.made.append(s)
        for batch in records:
            workload.produce(s, batch)
        return s

    def retrying(self, what: str, once: Callable[[], T]) -> T:
        for attempt in range(RETRIES + 1):
            try:
                return once()
            except TRANSIENT as exc:
                if attempt == RETRIES:
                    raise
                self.retried.append(f"{what}: {type(exc).__name__}: {exc}")
                out.print(f"[yellow]{what} broken ({exc}); again once the stack answers[/]")
                _wait_for_stack(self.base, self.admin)
        raise AssertionError("unreachable")  # the loop returns or raises

    def raw(self) -> None:
        env = self.retrying("raw sandbox", lambda: self.fresh("bench", self.cases))
        n, topic = self.args.events, env.topic("recommendations")
        # Each raw run lasts a fraction of a second: more of them make a steadier median.
        for i in range(max(self.args.runs, 5)):
            loops: tuple[tuple[str, Callable[[], raw.Speed]], ...] = (
                ("raw_consume", lambda: raw.raw_consume(env, n)),
                ("raw", lambda: raw.raw_passthrough(env, n, topic)),
            )
            for name, once in loops:
                speed = self.retrying(f"{name} {i}", once)
                self.figures.add(name, "events/s", speed.rate)
                self.figures.add(f"{name}.cpu", "ms CPU/event", speed.cpu_ms)

    def stages(self) -> None:
        for i in range(self.args.runs):
            out.print(f"  run {i + 1}/{self.args.runs}")
            # Alternate which kind goes first, so neither always meets a warmer broker.
            for kind in ("loop", "plain") if i % 2 == 0 else ("plain", "loop"):
                self.figures.merge(self.retrying(f"stages {kind} {i}", partial(self._stages, kind)))

    def _stages(self, kind: str) -> Figures:
        """intake, then recommend, then guard, each alone draining the backlog the one
        before it left (all of upstream's records, then every case's recommendation)."""
        got = Figures()
        n = self.args.stage_events
        s = self.fresh("stage", self.preamble, self.cases[:n])
        prefix = "" if kind == "loop" else "plain-"
        for name, output in STAGES:
            expect = n + (self.history_events if name == "intake" else self.opened_in_history)
            r = stage(s, prefix + name, output, expect, 60 + expect / 20)
            got.add(f"stage.{name}.{kind}", "events/s", r.rate)
            got.add(f"stage.{name}.{kind}.cpu", "ms CPU/event", r.cpu_ms_per_record())
            got.add(f"stage.{name}.{kind}.peak_rss", "MB", r.children[0].hwm_kb / 1024)
        return got

    def pipeline(self) -> None:
        for i in range(self.args.runs):
            out.print(f"  run {i + 1}/{self.args.runs}")
            got, run = self.retrying(f"pipeline {i}", partial(self._pipeline, i))
            self.figures.merge(got)
            _memory(run, self.figures, self.memory, self.args.events, "case")
            out.print(f"  run {i + 1}/{self.args.runs}, two workers per processor")
            got, _ = self.retrying(f"pipeline x2 {i}", partial(self._pipeline, i, 2))
            self.figures.merge(got)

    def _pipeline(self, i: int, workers: int = 1) -> tuple[Figures, Run]:
        """One run from a fresh backlog; with one worker per processor, the latency runs
        follow while its processes are still up."""
        got = Figures()
        expect = self.args.events + self.opened_in_history
        s = self.fresh("pipe", self.preamble, self.cases)
        name = "pipeline" if workers == 1 else f"pipeline.{workers}workers"
        if workers == 1:
            latency.install_trigger(s)
            listener = Listener(s)
        try:

            def then(children: list[Child], rate: float) -> None:
                _latency(s, self.codec, listener, got, self.args, rate, i)

            run = pipeline(
                s, expect, 120 + expect / 10, then=then if workers == 1 else None, workers=workers
            )
        finally:
            if workers == 1:
                listener.close()
        got.add(name, "cases/s", run.rate)
        got.add(f"{name}.cpu", "ms CPU/case", run.cpu_ms_per_record())
        return got, run

    def recommender(self) -> None:
        """CPU per case, fit time and memory of the recommender at each history size, in a
        process of its own per size (bench.recommender); no broker involved. Once: each
        CPU figure is already the median over that run's batches."""
        for name, value in recommender.measure(self.args.recommender_sizes).items():
            unit = "s" if "_s." in name else "MB" if "_mb." in name else "ms"
            self.figures.add(name, unit, value)

    def replay(self) -> None:
        mix_cases = -(-self.args.replay_events // 3)  # three events per case
        env = self.retrying("replay sandbox", lambda: self._replay_env(mix_cases))
        for i in range(self.args.replay_runs):
            out.print(f"  run {i + 1}/{self.args.replay_runs}")
            got, run, events = self.retrying(f"replay {i}", partial(self._replay, env))
            self.figures.merge(got)
            self.replayed = events
            _memory(run, self.figures, self.memory, events, "event")

    def _replay(self, env: Settings) -> tuple[Figures, Run, int]:
        """One rebuild, in a child process whose memory is sampled like the pipeline's.

        Every run rebuilds into the same schema (dropped first, outside the timing), so a
        million-event replay's rows do not pile up run after run.
        """
        got = Figures()
        report_file = LOGS / f"{env.topic_prefix}replay.json"
        report_file.unlink(missing_ok=True)
        limit_s = 120 + self.args.replay_events / 200
        names = {replayer.SCHEMA_VAR: "bench_replay", replayer.OUT_VAR: str(report_file)}
        with running(env, "replay", env=names) as children, Sampler(children):
            child = children[0]
            try:
                child.proc.wait(limit_s)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"replay not finished within {limit_s:.0f} s") from None
            if child.proc.returncode != 0:
                raise RuntimeError(
                    f"replay exited with {child.proc.returncode}; see {LOGS}/ for its log"
                )
        done = json.loads(report_file.read_text())
        report_file.unlink()
        report = done["report"]
        # The child's progress on its own clock (seconds since it was started).
        progress = Progress(report["events"])
        progress.samples = [(t - child.started, n) for t, n in done["progress"]]
        got.add("replay", "events/s", report["events"] / report["seconds"])
        run = Run(progress.sustained_rate(), progress, [child], {child.name: 0.0})
        got.add("replay.cpu", "ms CPU/event", run.cpu_ms_per_record())
        return got, run, report["events"]

    def _replay_env(self, cases: int) -> Settings:
        env = self.fresh("replay")
        workload.produce(env, workload.replay_mix(cases, self.codec))
        return env


def _wait_for_stack(base: Settings, admin: str, limit_s: float = 300.0) -> None:
    """Until the broker and PostgreSQL both answer again (then a little more).

    On the shared dev machine another session may have stopped the local services it had
    started: after a while without an answer they are started again, as `make bench`
    does at its start (a no-op for services named by the environment).
    """
    ends = time.monotonic() + limit_s
    next_start = time.monotonic() + 20
    while time.monotonic() < ends:
        try:
            AdminClient(common_config(base)).list_topics(timeout=5)
            with psycopg.connect(admin, connect_timeout=5):
                pass
            time.sleep(5)  # a restarted broker elects leaders for a few seconds more
            return
        except Exception:
            if time.monotonic() > next_start:
                next_start = time.monotonic() + 60
                with contextlib.suppress(Exception):
                    services_up(base, lambda line: out.print(f"  {line}"))
            time.sleep(2)
    raise TimeoutError(f"the broker or PostgreSQL did not come back within {limit_s:.0f} s")


def _destroy(base: Settings, admin: str, made: list[Settings], tries: int = 12) -> None:
    """Drop the sandboxes, retrying for a minute: a broker or database restarting under
    the bench (another engineer's fault-injection run) must not leave them behind."""
    for attempt in range(tries):
        try:
            sandbox.destroy(base, admin, made)
            return
        except Exception as exc:
            if attempt == tries - 1:
                raise
            out.print(f"cleanup failed ({exc}); retrying in 5 s")
            time.sleep(5)


def _latency(
    settings: Settings,
    codec: Codec,
    listener: Listener,
    figures: Figures,
    args: argparse.Namespace,
    max_rate: float,
    run: int,
) -> None:
    """Paced load at half the rate the backlog just drained at, then one case after idling."""
    rate = 0.5 * max_rate
    n = max(20, int(rate * args.latency_s))
    billing = workload.encode(
        codec,
        workload.case_events(n + 1, seed=100 + run, queues=(workload.BILLING,)),
        via_intake=True,
    )
    out.print(
        f"  latency at {rate:.0f} cases/s for {args.latency_s:g} s, "
        f"then one case after {args.idle_s:g} s idle …"
    )
    sender = latency.Sender(settings)
    measured = latency.paced(sender, listener, billing[:n], rate)
    if not measured.ms:  # nothing arrived: the run is void, not infinitely slow
        raise RuntimeError(f"none of {measured.sent} cases reached approval_queue")
    for p in latency.PERCENTILES:
        figures.add(f"latency.p{p:g}", "ms", measured.percentile(p))
    figures.add("latency.lost", "cases", measured.lost)
    for hop, ms in latency.hops(settings, measured).items():
        ranked = latency.Latencies(len(ms), ms)
        for p in (50.0, 99.0):
            figures.add(f"latency.hop.{hop}.p{p:g}", "ms", ranked.percentile(p))
    figures.add("latency.rate", "cases/s", rate)
    time.sleep(args.idle_s)
    idle = latency.paced(sender, listener, billing[n:], rate=1.0)
    if not idle.ms:
        raise RuntimeError("the case sent after the idle period never reached approval_queue")
    sender.close()
    figures.add("latency.idle_first", "ms", idle.percentile(100.0))


def _memory(run: Run, figures: Figures, memory: dict[str, Trend], units: int, per: str) -> None:
    """Peak RSS (VmHWM) and growth after warm-up (from 30 % of the work to its end), per
    process; ``units`` cases (or events) were handled over the whole run."""
    for child in run.children:
        _, grew_kb = growth(child.rss, run.at(child, WARM_FRACTION), run.at(child, 1.0))
        figures.add(f"memory.{child.name}.peak_rss", "MB", child.hwm_kb / 1024)
        figures.add(f"memory.{child.name}.growth", "MB", grew_kb / 1024)
        trend = memory.setdefault(child.name, Trend(per, units))
        trend.bytes_per_unit.append(bytes_per_unit(grew_kb, units))
        trend.rss_mb_by_tenth.append(
            [round(rss_at(child.rss, run.at(child, k / 10)) / 1024, 1) for k in range(1, 11)]
        )


if __name__ == "__main__":
    main()
