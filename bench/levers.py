"""`python -m bench.levers`: one lever at a time, before and after, on the same workload.

Not part of `make bench` (it takes several minutes more); docs/performance.md quotes it.
- faust stages (recommend, guard) under each `bench.variant` against the unchanged worker;
- the plain loops flushing per batch against flushing after every record;
- the read models' consume wait (`oldpoll`) against the current runner, as latency at a
  fixed, low rate through the whole pipeline.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from bench import latency, workload
from bench.latency import Listener
from bench.procs import running
from bench.progress import ProjectedCounter, wait_for
from bench.report import RESULTS
from bench.stages import stage
from infra import sandbox
from infra.bootstrap import services_up
from infra.settings import Settings
from schemas.codec import Codec

out = Console()
FAUST_VARIANTS = ("baseline", "uvloop", "linger5", "commit05", "noackwait", "confluent")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.levers", description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--variants", default=",".join(FAUST_VARIANTS))
    parser.add_argument("--latency-rate", type=float, default=20.0)
    parser.add_argument("--latency-s", type=float, default=20.0)
    args = parser.parse_args()
    base = Settings()
    services_up(base, lambda line: None)
    admin = sandbox.server_admin_url(base)
    codec = Codec.load()
    history = workload.history_events()
    preamble = workload.encode(codec, [workload.policy_event(), *history])
    cases = workload.encode(codec, workload.case_events(args.events))
    expect = args.events + sum(1 for e in history if e.event_type == "CaseOpened")
    made: list[Settings] = []
    rows: list[dict[str, object]] = []

    def fresh() -> Settings:
        s = sandbox.create(base, admin, "lever")
        made.append(s)
        workload.produce(s, preamble)
        workload.produce(s, cases)
        return s

    try:
        kinds = [f"{v}:" for v in args.variants.split(",") if v] + ["plain", "plain-flush"]
        for run in range(args.runs):
            for kind in kinds:
                s = fresh()
                for name, output in (("recommend", "recommendations"), ("guard", "decisions")):
                    component = {
                        "plain": f"plain-{name}",
                        "plain-flush": f"plain-{name}:flush-each",
                    }.get(kind, kind + name)
                    try:
                        r = stage(s, component, output, expect, 60 + expect / 10)
                    except (RuntimeError, TimeoutError) as exc:  # a variant may not start
                        out.print(f"{component}: {exc}")
                        rows.append({"lever": component, "run": run, "error": str(exc)})
                        break
                    rows.append(
                        {
                            "lever": component,
                            "run": run,
                            "rate": r.rate,
                            "cpu_ms_per_event": r.cpu_ms_per_record(),
                        }
                    )
                    out.print(
                        f"{component:28s} run {run}: {r.rate:8.0f} events/s, "
                        f"{r.cpu_ms_per_record():.2f} ms CPU/event"
                    )
        for run in range(args.runs):
            for readmodels in ("readmodels", "oldpoll:readmodels"):
                rows.append(
                    _latency(
                        fresh_pipeline(base, admin, made, preamble),
                        codec,
                        readmodels,
                        expect - args.events,
                        args,
                        run,
                    )
                )
    finally:
        sandbox.destroy(base, admin, made)

    table = Table("lever", "run", "events/s", "ms CPU/event", "latency p50 / p99 ms")
    for row in rows:
        table.add_row(
            str(row["lever"]),
            str(row["run"]),
            f"{row.get('rate', 0):,.0f}",
            f"{row.get('cpu_ms_per_event', 0):.2f}",
            str(row.get("latency", row.get("error", ""))),
        )
    out.print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"levers-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"parameters": vars(args), "rows": rows}, indent=2))
    out.print(f"results written to {path}")


def fresh_pipeline(
    base: Settings, admin: str, made: list[Settings], preamble: list[workload.Encoded]
) -> Settings:
    """A sandbox holding only the policy and the history, with the latency trigger."""
    s = sandbox.create(base, admin, "lever")
    made.append(s)
    workload.produce(s, preamble)
    latency.install_trigger(s)
    return s


def _latency(
    settings: Settings,
    codec: Codec,
    readmodels: str,
    history_opened: int,
    args: argparse.Namespace,
    run: int,
) -> dict[str, object]:
    """Whole pipeline at a fixed low rate; what the read models' hop costs."""
    n = int(args.latency_rate * args.latency_s)
    billing = workload.encode(
        codec, workload.case_events(n, seed=200 + run, queues=(workload.BILLING,))
    )
    listener = Listener(settings)
    decided = ProjectedCounter(settings, "decisions")
    try:
        with running(settings, readmodels, "recommend", "guard") as children:
            # Warm: the history's own cases decided and projected before timing starts.
            wait_for(decided, history_opened, 120, alive=children[0].check_alive)
            sender = latency.Sender(settings)
            measured = latency.paced(sender, listener, billing, args.latency_rate)
            sender.close()
    finally:
        decided.close()
        listener.close()
    hop = latency.Latencies(0, latency.hops(settings, measured)["readmodels"])
    row: dict[str, object] = {
        "lever": readmodels,
        "run": run,
        "latency": f"{measured.percentile(50):.0f} / {measured.percentile(99):.0f}",
        "readmodels_hop_ms": {"p50": hop.percentile(50), "p99": hop.percentile(99)},
        "total_ms": {"p50": measured.percentile(50), "p99": measured.percentile(99)},
    }
    out.print(
        f"{readmodels:28s} run {run}: end-to-end p50/p99 {row['latency']} ms, "
        f"read-model hop p50/p99 {hop.percentile(50):.0f} / {hop.percentile(99):.0f} ms"
    )
    return row


if __name__ == "__main__":
    main()
