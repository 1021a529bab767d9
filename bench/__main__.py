"""`python -m bench [--quick]`: every figure as median (min to max) of several runs, and as a
ratio to a baseline measured in the same run; targets checked and stated plainly.

Order: raw baselines, each stage alone (faust and plain), the pipeline (with latency at
half its measured rate, and after an idle period, while its processes are still up), then
the replay. Every child process is stopped and every sandbox dropped, whatever happens.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from bench import latency, raw, workload
from bench.latency import Listener
from bench.measure import Figures, Target, growth
from bench.procs import Child
from bench.report import write_report
from bench.stages import Run, Then, pipeline, stage
from infra import sandbox
from infra.bootstrap import services_up
from infra.settings import Settings
from projections.replay import rebuild
from schemas.codec import Codec

out = Console()

TARGETS = (
    Target("pipeline / raw", ">=", 0.25),
    Target("recommend faust / plain", ">=", 0.5),
    Target("guard faust / plain", ">=", 0.5),
    Target("latency p99 (ms)", "<=", 100.0),
    Target("latency p99.9 (ms)", "<=", 250.0),
    Target("replay / raw_consume", ">=", 0.3),
)
# A process's memory is flat when it grew less than this between 30 % and 100 % of the run.
FLAT_GROWTH = 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure")
    # Defaults sized so a full run stays under ~15 minutes on the 2-core dev machine: the
    # replay's 1,000,000 events alone would take ~6 minutes per run there.
    parser.add_argument(
        "--events",
        type=int,
        default=5_000,
        help="CaseOpened through the pipeline (raw baselines move as many)",
    )
    parser.add_argument(
        "--stage-events", type=int, default=3_000, help="CaseOpened through each stage alone"
    )
    parser.add_argument("--replay-events", type=int, default=120_000)
    parser.add_argument("--history", type=int, default=150, help="resolved cases per queue")
    parser.add_argument(
        "--latency-s",
        type=float,
        default=20.0,
        help="seconds of paced load at half the pipeline's rate",
    )
    parser.add_argument(
        "--idle-s", type=float, default=60.0, help="idle time before the first-event latency"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (default: results/bench-<UTC time>.json)",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.events, args.stage_events, args.replay_events = 1, 400, 200, 3_000
        args.history, args.latency_s, args.idle_s = 20, 2.0, 2.0
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    phases: dict[str, float] = {}
    clock = [time.monotonic()]

    def phase(name: str) -> None:
        """Seconds each phase took, for choosing N (kept in the JSON)."""
        now = time.monotonic()
        phases[name] = round(now - clock[0], 1)
        clock[0] = now

    base = Settings()
    services_up(base, lambda line: None)
    admin = sandbox.server_admin_url(base)
    codec = Codec.load()
    made: list[Settings] = []

    def fresh(label: str, records: list[list[workload.Encoded]]) -> Settings:
        s = sandbox.create(base, admin, label)
        made.append(s)
        for batch in records:
            workload.produce(s, batch)
        return s

    out.print(
        f"[bold]casegate bench[/] — {args.events} pipeline / {args.stage_events} stage / "
        f"{args.replay_events} replay events, {args.runs} run(s)"
    )
    history = workload.history_events(args.history)
    opened_in_history = sum(1 for e in history if e.event_type == "CaseOpened")
    preamble = workload.encode(codec, [workload.policy_event(), *history])
    cases = workload.encode(codec, workload.case_events(args.events))
    phase("setup")
    figures = Figures()
    memory: dict[str, dict[str, list[float]]] = {}
    failure: str | None = None
    replayed = 0
    try:
        out.print("raw baselines …")
        env = fresh("bench", [cases])
        for _ in range(args.runs):
            figures.add("raw_consume", "events/s", raw.raw_consume(env, args.events))
            figures.add(
                "raw",
                "events/s",
                raw.raw_passthrough(env, args.events, env.topic("recommendations")),
            )

        phase("raw")
        stage_cases = cases[: args.stage_events]
        expect = args.stage_events + opened_in_history
        timeout = 60 + expect / 20
        for i in range(args.runs):
            out.print(f"stages, run {i + 1}/{args.runs} …")
            # Alternate which kind goes first, so neither always meets a warmer broker.
            kinds = ("faust", "plain") if i % 2 == 0 else ("plain", "faust")
            for kind in kinds:
                s = fresh("stage", [preamble, stage_cases])
                prefix = "" if kind == "faust" else "plain-"
                for name, output in (("recommend", "recommendations"), ("guard", "decisions")):
                    r = stage(s, prefix + name, output, expect, timeout)
                    figures.add(f"stage.{name}.{kind}", "events/s", r.rate)
                    figures.add(f"stage.{name}.{kind}.cpu", "ms CPU/event", r.cpu_ms_per_record())
                    figures.add(f"stage.{name}.{kind}.peak_rss", "MB", r.children[0].hwm_kb / 1024)

        phase("stages")
        expect = args.events + opened_in_history
        for i in range(args.runs):
            out.print(f"pipeline, run {i + 1}/{args.runs} …")
            s = fresh("pipe", [preamble, cases])
            latency.install_trigger(s)
            listener = Listener(s)
            try:
                run = pipeline(s, expect, 120 + expect / 10,
                               then=_latency_runner(s, codec, listener, figures, args, i))
            finally:
                listener.close()
            figures.add("pipeline", "events/s", run.rate)
            figures.add("pipeline.cpu", "ms CPU/event", run.cpu_ms_per_record())
            _memory(run, figures, memory, args.events)

        phase("pipeline")
        out.print("replay …")
        replay_env = sandbox.create(base, admin, "replay")
        made.append(replay_env)
        mix_cases = -(-args.replay_events // 3)  # three events per case
        workload.produce(replay_env, workload.replay_mix(mix_cases, codec))
        for i in range(args.runs):
            report = rebuild(replay_env, codec, schema=f"bench_replay_{i}",
                             advance=_deadline(120 + args.replay_events / 200, "replay"))
            figures.add("replay", "events/s", report.events / report.seconds)
            replayed = report.events
        phase("replay")
    except Exception as exc:  # keep what was measured; say plainly what failed
        failure = f"{type(exc).__name__}: {exc}"
        out.print(f"[bold red]bench failed:[/] {failure}")
    finally:
        out.print("cleaning up sandboxes …")
        _destroy(base, admin, made)

    def median(name: str) -> float:
        return figures[name].median if name in figures else float("nan")

    ratios = {
        "pipeline / raw": median("pipeline") / median("raw"),
        "recommend faust / plain": median("stage.recommend.faust")
        / median("stage.recommend.plain"),
        "guard faust / plain": median("stage.guard.faust") / median("stage.guard.plain"),
        "latency p99 (ms)": median("latency.p99"),
        "latency p99.9 (ms)": median("latency.p99.9"),
        "replay / raw_consume": median("replay") / median("raw_consume"),
    }
    params = {
        **vars(args),
        "out": str(args.out),
        "replayed_events": replayed,
        "history_cases": opened_in_history,
        "phases_s": phases,
        "elapsed_s": round(time.monotonic() - started, 1),
        "failure": failure,
    }
    write_report(out, figures, ratios, TARGETS, memory, params, args.out)
    if failure is not None:
        sys.exit(f"bench failed: {failure}")


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


def _deadline(limit_s: float, what: str) -> Callable[[int], None]:
    """A progress callback that gives up after ``limit_s``: the bench always ends (a
    broker restarted under it, say, must not leave it waiting forever)."""
    ends = time.monotonic() + limit_s

    def check(_: int) -> None:
        if time.monotonic() > ends:
            raise TimeoutError(f"{what} not finished within {limit_s:.0f} s")

    return check


def _latency_runner(settings: Settings, codec: Codec, listener: Listener, figures: Figures,
                    args: argparse.Namespace, run: int) -> Then:
    """The pipeline's `then`: latency measured while its processes are still up."""

    def then(children: list[Child], rate: float) -> None:
        _latency(settings, codec, listener, figures, args, rate, run)

    return then


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
        codec, workload.case_events(n + 1, seed=100 + run, queues=(workload.BILLING,))
    )
    out.print(
        f"  latency at {rate:.0f} cases/s for {args.latency_s:g} s, "
        f"then one case after {args.idle_s:g} s idle …"
    )
    sender = latency.Sender(settings)
    measured = latency.paced(sender, listener, billing[:n], rate)
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
    sender.close()
    figures.add("latency.idle_first", "ms", idle.percentile(100.0))


def _memory(
    run: Run, figures: Figures, memory: dict[str, dict[str, list[float]]], cases: int
) -> None:
    """Peak RSS (VmHWM) and growth between 30 % and 100 % of the backlog, per process."""
    for child in run.children:
        start_kb, grew_kb = growth(child.rss, run.at(child, 0.3), run.at(child, 1.0))
        figures.add(f"memory.{child.name}.peak_rss", "MB", child.hwm_kb / 1024)
        figures.add(f"memory.{child.name}.growth", "MB", grew_kb / 1024)
        entry = memory.setdefault(child.name, {"flat": [], "kb_per_1000_cases": []})
        entry["flat"].append(float(grew_kb <= FLAT_GROWTH * start_kb))
        # Growth happens over the last 70 % of the cases.
        entry["kb_per_1000_cases"].append(grew_kb / (0.7 * cases) * 1000)


if __name__ == "__main__":
    main()
