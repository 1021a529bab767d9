"""`python -m bench [--quick]`: every figure as median (min to max) of several runs, and as a
ratio to a raw confluent-kafka baseline measured in the same run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from bench import raw, workload
from bench.measure import Figure, repeat
from infra import sandbox
from infra.bootstrap import services_up
from infra.settings import PROJECT_ROOT, Settings
from projections.replay import rebuild
from schemas.codec import Codec

out = Console()
RESULTS = PROJECT_ROOT / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--replay-events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.events, args.replay_events, args.runs = 2_000, 4_000, 1

    base = Settings()
    services_up(base, lambda line: None)
    admin = sandbox.server_admin_url(base)
    codec = Codec.load()
    figures: dict[str, Figure] = {}
    made: list[Settings] = []

    def fresh(label: str) -> Settings:
        s = sandbox.create(base, admin, label)
        made.append(s)
        return s

    try:
        out.print(f"[bold]casegate bench[/] — {args.events} events, {args.runs} run(s)")
        env = fresh("bench")
        events = workload.case_events(args.events)
        workload.produce(env, codec, events)
        figures["raw_consume"] = repeat(
            "raw_consume", "events/s", args.runs, lambda _: raw.raw_consume(env, args.events)
        )
        figures["raw"] = repeat(
            "raw",
            "events/s",
            args.runs,
            lambda i: raw.raw_passthrough(env, args.events, env.topic("recommendations")),
        )

        replay_env = fresh("replay")
        workload.produce(replay_env, codec, workload.case_events(args.replay_events, seed=2))
        figures["replay"] = repeat(
            "replay", "events/s", args.runs, lambda i: _replay(replay_env, codec, i)
        )
    finally:
        sandbox.destroy(base, admin, made)

    ratios = {
        "replay / raw_consume": figures["replay"].median / figures["raw_consume"].median,
    }
    targets = {"replay / raw_consume": 0.3}
    report(figures, ratios, targets, args)


def _replay(settings: Settings, codec: Codec, run: int) -> float:
    report = rebuild(settings, codec, schema=f"bench_replay_{run}")
    return report.events / report.seconds


def report(
    figures: dict[str, Figure],
    ratios: dict[str, float],
    targets: dict[str, float],
    args: argparse.Namespace,
) -> None:
    table = Table("figure", "median", "min", "max", "unit", title="measured")
    for f in figures.values():
        table.add_row(
            f.name, f"{f.median:,.0f}", f"{min(f.runs):,.0f}", f"{max(f.runs):,.0f}", f.unit
        )
    out.print(table)
    verdicts = Table("ratio", "value", "target", "met", title="ratios (same run)")
    for name, value in ratios.items():
        target = targets.get(name)
        met = "—" if target is None else ("yes" if value >= target else "[red]NO[/]")
        verdicts.add_row(name, f"{value:.2f}", "—" if target is None else f">= {target}", met)
    out.print(verdicts)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(
        json.dumps(
            {
                "date": stamp,
                "command": "make bench" + (" QUICK=1" if args.quick else ""),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "parameters": vars(args),
                "figures": {k: f.as_dict() for k, f in figures.items()},
                "ratios": ratios,
                "targets": targets,
                "elapsed_s": time.process_time(),
            },
            indent=2,
        )
    )
    out.print(f"results written to {path}")


if __name__ == "__main__":
    main()
