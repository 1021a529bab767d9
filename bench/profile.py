"""`python -m bench.profile recommend|guard|replay`: where one component's time goes while it
drains a backlog, sampled by py-spy and grouped by library (docs/performance.md quotes it).

Not part of `make bench`. The component runs as in the bench (its own process, a sandbox
holding the bench's workload); py-spy attaches once a tenth of the work is done, so
start-up does not count, and samples without pausing the process (``--nonblocking``).
Shares are of the samples' innermost Python frame (self time). Time inside a C call
(librdkafka, fastavro's extension) counts for the Python function that called it. The
processors are sampled while busy only; the replay with ``--idle`` too, so its waits on
PostgreSQL show.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import replayer, workload
from bench.procs import LOGS, Child, running
from bench.progress import TopicCounter, wait_for
from bench.report import RESULTS
from bench.stages import stage
from infra import sandbox
from infra.bootstrap import services_up
from infra.secrets import install_event_id_key
from infra.settings import Settings
from schemas.codec import Codec

out = Console()
PY_SPY = Path(sys.executable).parent / "py-spy"

# (start of the frame's file path as py-spy prints it, group): the first match names it.
GROUPS = (
    ("processors/loop.py", "the batch loop: consume, transactions (processors/loop.py)"),
    ("processors/store.py", "state store and overlay (processors/store.py, SQLite)"),
    ("processors/follow.py", "followers: policy, history (processors/follow.py)"),
    ("asyncio/selector_events.py", "socket reads and writes (asyncio transports)"),
    ("asyncio/", "asyncio event loop (callbacks, tasks, futures)"),
    ("selectors.py", "epoll (the event loop polling)"),
    ("concurrent/futures/", "thread-pool hand-off (concurrent.futures)"),
    ("fastavro/", "Avro encode / decode (fastavro, schemas/codec.py)"),
    ("schemas/codec.py", "Avro encode / decode (fastavro, schemas/codec.py)"),
    ("schemas/", "event classes (schemas/)"),
    ("policy/", "the guard's decision (policy/)"),
    ("processors/recommend/", "the recommender (processors/recommend/)"),
    ("processors/", "casegate's processor plumbing (processors/)"),
    ("psycopg/waiting.py", "waiting for PostgreSQL (psycopg.waiting)"),
    ("psycopg/", "psycopg (statements, COPY, pipeline)"),
    ("projections/envelope.py", "each event's JSON form (projections/envelope.py)"),
    ("projections/", "read-model code (projections/), incl. its librdkafka calls"),
    ("confluent_kafka/", "confluent-kafka"),
)


OWN = ("processors/", "projections/", "schemas/", "policy/")


def group(frame: str) -> str:
    """The group of one py-spy frame, ``function (path:line)``."""
    path = frame[frame.rfind("(") + 1 : frame.rfind(":")]
    for start, name in GROUPS:
        if path.startswith(start):
            return name
    return "other (stdlib, logging, pydantic, …)"


def shares(raw: str) -> dict[str, float]:
    """Self-time share per group, from py-spy's ``--format raw`` (collapsed stacks:
    ``root;…;leaf COUNT`` per line, innermost frame last)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[group(stack.rsplit(";", 1)[-1])] += int(n)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


def inclusive(raw: str, top: int = 15) -> dict[str, float]:
    """Share of samples with each of casegate's own functions anywhere on the stack (its
    callees included): which step of casegate's code the time is spent under."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not (stack and n.isdigit()):
            continue
        total += int(n)
        # "function (path:line)" without the line: one entry per function, not per line.
        mine = {
            f.rsplit(":", 1)[0] + ")" for f in stack.split(";") if f.split("(")[-1].startswith(OWN)
        }
        for frame in mine:
            counts[frame] += int(n)
    return {name: n / (total or 1) for name, n in counts.most_common(top)}


def record(child: Child, seconds: float, idle: bool, into: Path) -> None:
    args = [str(PY_SPY), "record", "--pid", str(child.proc.pid), "--duration", str(int(seconds))]
    args += ["--rate", "100", "--nonblocking", "--format", "raw", "--output", str(into)]
    subprocess.run([*args, *(["--idle"] if idle else [])], check=True, capture_output=True)
    child.check_alive()  # a profile of a process that died half-way would say nothing


def profile_stage(
    base: Settings, admin: str, codec: Codec, name: str, cases: int, seconds: float, into: Path
) -> None:
    """The processor ``name`` (recommend or guard) draining ``cases`` CaseOpened."""
    history = workload.history_events()
    expect = cases + sum(1 for e in history if e.event_type == "CaseOpened")
    s = sandbox.create(base, admin, "profile")
    try:
        workload.produce(s, workload.encode(codec, [workload.policy_event(), *history]))
        workload.produce(s, workload.encode(codec, workload.case_events(cases)))
        output = "recommendations"
        if name == "guard":  # its input: recommendations, made by the (faster) plain loop
            stage(s, "plain-recommend", output, expect, 60 + expect / 20)
            output = "decisions"
        counter = TopicCounter(s, output)
        try:
            with running(s, name) as children:
                wait_for(counter, expect // 10, 120, alive=children[0].check_alive)
                left = expect - counter()
                if left < seconds * 150:
                    out.print(f"[yellow]only {left} records left: the profile may end idle[/]")
                record(children[0], seconds, idle=False, into=into)
        finally:
            counter.close()
    finally:
        sandbox.destroy(base, admin, [s])


def profile_replay(
    base: Settings, admin: str, codec: Codec, events: int, seconds: float, into: Path
) -> None:
    """`projections.replay.rebuild` of ``events`` (a third each of cases, recommendations,
    decisions), in the bench's replay child."""
    s = sandbox.create(base, admin, "profile")
    try:
        workload.produce(s, workload.replay_mix(-(-events // 3), codec))
        names = {replayer.SCHEMA_VAR: "profile", replayer.OUT_VAR: str(LOGS / "profile.json")}
        with running(s, "replay", env=names) as children:
            time.sleep(5)  # imports, migrations, the group join: not the replay's speed
            record(children[0], seconds, idle=True, into=into)
    finally:
        sandbox.destroy(base, admin, [s])


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.profile", description=__doc__)
    parser.add_argument("component", choices=("recommend", "guard", "replay"))
    parser.add_argument("--cases", type=int, default=6_000, help="backlog for recommend/guard")
    parser.add_argument("--events", type=int, default=150_000, help="events for the replay")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long py-spy samples")
    parser.add_argument(
        "--from-file", type=Path, default=None, help="group a recorded profile again, run nothing"
    )
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    raw_file = args.from_file or RESULTS / f"profile-{args.component}-{stamp}.txt"
    if args.from_file is None:
        base = Settings()
        services_up(base, lambda line: None)
        install_event_id_key(base)
        admin, codec = sandbox.server_admin_url(base), Codec.load()
        if args.component == "replay":
            profile_replay(base, admin, codec, args.events, args.seconds, raw_file)
        else:
            profile_stage(base, admin, codec, args.component, args.cases, args.seconds, raw_file)
    raw = raw_file.read_text()
    found, under = shares(raw), inclusive(raw)
    table = Table("where the time goes (self)", "share", title=f"py-spy: {args.component}")
    for name, share in found.items():
        table.add_row(name, f"{share:.1%}")
    out.print(table)
    table = Table("casegate function (with its callees)", "share")
    for name, share in under.items():
        table.add_row(name, f"{share:.1%}")
    out.print(table)
    path = raw_file.with_suffix(".json")
    summary = {"parameters": vars(args), "shares": found, "inclusive": under}
    path.write_text(json.dumps(summary, default=str, indent=2))
    out.print(f"collapsed stacks in {raw_file}, shares in {path}")


if __name__ == "__main__":
    main()
