"""`python -m tests.chaos [--cases N] [--quick]`: casegate under fault injection.

While N cases flow through every processor and the read models (recommend → guard →
approve, with operators' reviews, → execute against a real downstream HTTP server), each
component is SIGKILLed at random moments several times and, when the stack is the local
processes, the Kafka broker and PostgreSQL are restarted once each. Afterwards the topics
and the tables must show every case with exactly its expected decisions, reviews,
executions and audit rows (nothing lost, nothing doubled), no action performed twice
downstream, an intact audit chain and read models equal to a fresh replay. The run prints
one table of the faults (recovery time each) and one of the checks, and writes both to
results/chaos-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from rich.console import Console
from rich.table import Table

from console.policy_topic import publish_policy
from demo.workload import generate, shifted, split_history
from infra import sandbox
from infra.kafka import consumer_config, producer_config, read_headers
from infra.secrets import install_event_id_key
from infra.settings import PROJECT_ROOT, Settings
from infra.topics import INTAKE, produced_to
from policy.loader import default_policy_path, load_policy_text
from schemas.codec import Codec, CodecError
from schemas.events import (
    CaseOpened,
    CaseResolved,
    Event,
    GuardrailDecided,
    ReviewSubmitted,
    derived_event_id,
    review_binding,
    utc_now,
)
from tests.chaos.check import Verdict, check
from tests.chaos.faults import (
    COMPONENTS,
    READ_MODELS,
    Component,
    FaultRecord,
    Probe,
    Watcher,
    can_restart_services,
    restart_kafka,
    restart_postgres,
)
from tests.downstream import Downstream

log = logging.getLogger(__name__)
RESULTS = PROJECT_ROOT / "results"
# librdkafka's own log level for the harness's clients: a broker that restarts is this
# run's point, not news. (No Python logger callback: see tests.chaos.faults.Probe.)
QUIET = 0

# The operators who review in the run, by role (two or more per role: quorums of two
# distinct approvers must be reachable).
OPERATORS: dict[str, tuple[str, ...]] = {
    "supervisor": ("sam", "sue"),
    "finance_lead": ("fin", "flo"),
    "agent": ("ann", "abe"),
    "admin": ("ada", "al"),
}


@dataclass(frozen=True)
class ChaosPlan:
    cases: int = 20_000  # live cases, opened while the faults happen
    history: int = 600  # resolved cases on the topic beforehand, for the recommender to learn
    rate: float = 100.0  # live cases per second (a tenth of what the pipeline drains here)
    kills_per_component: int = 3
    restart_broker: bool = True
    restart_postgres: bool = True
    seed: int = 8
    reject_one_in: int = 8  # operators reject this share of the items, approve the rest
    startup_timeout_s: float = 240.0
    recovery_timeout_s: float = 240.0
    drain_timeout_s: float = 2400.0
    replay: bool = True

    @classmethod
    def quick(cls, restarts: bool = True) -> ChaosPlan:
        """A few hundred cases, two kills per component: two to five minutes, depending on
        the machine; the broker's restart alone can take minutes on a busy one."""
        return cls(
            cases=300,
            history=120,
            rate=6.0,
            kills_per_component=2,
            restart_broker=restarts,
            restart_postgres=restarts,
            drain_timeout_s=240.0,
            recovery_timeout_s=120.0,
        )

    @property
    def feed_seconds(self) -> float:
        return self.cases / self.rate


@dataclass
class ChaosReport:
    plan: ChaosPlan
    prefix: str
    faults: list[FaultRecord]
    unplanned_exits: dict[str, list[int]]
    kills: dict[str, int]
    verdict: Verdict | None
    elapsed_s: float
    sent: int
    reviews_sent: int
    notes: list[str] = field(default_factory=list)  # what went wrong outside the checks

    def problems(self) -> list[str]:
        out = list(self.notes)
        out += [
            f"{f.kind} of {f.target} at {f.at_s:.0f}s did not recover (waiting for "
            f"{sorted(f.pending)}; last seen {[f.last.get(n) for n in sorted(f.pending)]})"
            for f in self.faults
            if f.recovered_s is None
        ]
        out += [
            f"{name} exited on its own {len(codes)} time(s) (exit codes {codes})"
            for name, codes in self.unplanned_exits.items()
            if codes
        ]
        if self.verdict is not None:
            out += self.verdict.problems()
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()


# --- the workload ------------------------------------------------------------------------


def chaos_policy(url: str) -> str:
    """The default policy with every adapter calling the downstream server and room for
    every automatic run (a blast-radius refusal is not what this run is about)."""
    text = default_policy_path().read_text()
    text = re.sub(
        r"adapter: \{kind: log[^}]*\}",
        f'adapter: {{kind: http, url: "{url}/ok", post_condition: done}}',
        text,
    )
    text = re.sub(r"max_auto_runs: \d+", "max_auto_runs: 10000000", text)
    return re.sub(r'^version: ".*"$', 'version: "chaos.1"', text, count=1, flags=re.M)


def workload(plan: ChaosPlan) -> tuple[list[Event], list[CaseOpened]]:
    """(history, live): resolved demo cases to learn from, then the live openings.

    The history keeps openings and resolutions only: an update that changes a case's text
    asks for a second recommendation, which would blur "one recommendation per case".
    """
    total = plan.history + plan.cases
    now = utc_now()
    past, live = split_history(generate(plan.seed, total, now, plan.rate), plan.history / total)
    kept = [e for e in past if isinstance(e, CaseOpened | CaseResolved)]
    # In the past: the history ends a minute before the live cases begin.
    last = max((e.occurred_at for e in kept), default=now)
    history = shifted(kept, now - timedelta(minutes=1) - last)
    return history, [e for e in live if isinstance(e, CaseOpened)]


class Feeder(threading.Thread):
    """Publishes the live cases at the plan's rate, each at the time it is sent."""

    def __init__(
        self, settings: Settings, codec: Codec, cases: list[CaseOpened], rate: float
    ) -> None:
        super().__init__(daemon=True, name="chaos-feeder")
        self.settings, self.codec, self.cases, self.rate = settings, codec, cases, rate
        self.sent = 0
        self.failed: list[str] = []
        self.done = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        producer = Producer(producer_config(self.settings, log_level=QUIET))
        topic = self.settings.topic(INTAKE)
        started = time.monotonic()
        try:
            for i, case in enumerate(self.cases):
                if self.halt.is_set():
                    break
                delay = started + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                value, headers = self.codec.encode(replace(case, occurred_at=utc_now()))
                _produce(producer, topic, case.case_id, value, headers, self._delivered)
                self.sent += 1
            if producer.flush(300):
                self.failed.append("live cases not acknowledged within 300 s")
        finally:
            self.done.set()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"{msg.key()!r}: {err.str()}")


class Operators(threading.Thread):
    """Reviews every item the guard sends to the queue, as eligible operators would: the
    approvals the item needs from distinct operators, or one rejection."""

    def __init__(self, settings: Settings, codec: Codec, reject_one_in: int) -> None:
        super().__init__(daemon=True, name="chaos-operators")
        self.settings, self.codec, self.reject_one_in = settings, codec, reject_one_in
        self.planned: dict[str, str] = {}  # recommendation_id -> approved | rejected
        self.sent = 0
        self.unreviewable: list[str] = []
        self.failed: list[str] = []
        self.halt = threading.Event()
        self.at_end = False
        self._lock = threading.Lock()

    def run(self) -> None:
        conf = consumer_config(
            self.settings,
            f"chaos-operators-{uuid.uuid4()}",
            **{"enable.partition.eof": True},
            log_level=QUIET,
        )
        consumer = Consumer(conf)
        producer = Producer(producer_config(self.settings, log_level=QUIET))
        name = self.settings.topic("decisions")
        parts = consumer.list_topics(name, timeout=30).topics[name].partitions
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in parts])
        eof: set[int] = set()
        try:
            while not self.halt.is_set():
                for msg in consumer.consume(500, 0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            eof.add(msg.partition() or 0)
                        continue
                    eof.discard(msg.partition() or 0)
                    self._review(msg, producer)
                producer.poll(0)
                self.at_end = len(eof) == len(parts) and len(producer) == 0
            producer.flush(60)
        finally:
            consumer.close()

    def _review(self, msg: Message, producer: Producer) -> None:
        try:
            decision = self.codec.decode(msg.value(), read_headers(msg))
        except CodecError:
            return
        if not isinstance(decision, GuardrailDecided) or decision.outcome != "approval_required":
            return
        rec_id = decision.recommendation_id
        if rec_id in self.planned:
            return  # a redelivered decision: reviewed already
        reviewers = [
            (actor, role) for role in decision.eligible_roles for actor in OPERATORS.get(role, ())
        ]
        reviewers = list({actor: (actor, role) for actor, role in reviewers}.values())
        reject = int(uuid.uuid5(uuid.NAMESPACE_URL, rec_id)) % self.reject_one_in == 0
        wanted = 1 if reject else max(1, decision.approvals_required)
        if len(reviewers) < wanted:
            self.unreviewable.append(rec_id)
            return
        self.planned[rec_id] = "rejected" if reject else "approved"
        for actor, role in reviewers[:wanted]:
            review_id = derived_event_id(decision.event_id, f"chaos-review:{actor}")
            review = ReviewSubmitted(
                event_id=derived_event_id(review_id, "ReviewSubmitted"),
                case_id=decision.case_id,
                occurred_at=utc_now(),
                causation_id=decision.event_id,
                correlation_id=decision.correlation_id,
                review_id=review_id,
                recommendation_id=rec_id,
                actor=actor,
                roles=(role,),
                verdict="reject" if reject else "approve",
                reason="chaos run: rejected" if reject else None,
                # Bound to what the decision put in front of the operator.
                **(
                    review_binding(decision.action, decision.policy_version)
                    if decision.action is not None
                    else {}
                ),
            )
            value, headers = self.codec.encode(review)
            _produce(
                producer,
                self.settings.topic("reviews"),
                review.case_id,
                value,
                headers,
                self._delivered,
            )
            self.sent += 1

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"review {msg.key()!r}: {err.str()}")


def _produce(
    producer: Producer,
    topic: str,
    key: str,
    value: bytes,
    headers: list[tuple[str, bytes]],
    on_delivery: Callable[..., None],
) -> None:
    wire: list[Any] = list(headers)  # confluent's stub wants a wider element type
    while True:
        try:
            producer.produce(
                topic, key=key.encode(), value=value, headers=wire, on_delivery=on_delivery
            )
            return
        except BufferError:  # the broker is away (restart): wait for room in the queue
            producer.poll(0.2)


# --- the run -------------------------------------------------------------------------------


def schedule(plan: ChaosPlan, restarts: bool, rng: random.Random) -> list[tuple[float, str, str]]:
    """(seconds into the feed, kind, target) of every fault, in time order."""
    faults = [("sigkill", c) for c in COMPONENTS for _ in range(plan.kills_per_component)]
    if restarts and plan.restart_broker:
        faults.append(("broker restart", "kafka"))
    if restarts and plan.restart_postgres:
        faults.append(("postgres restart", "postgresql"))
    # Inside the feed, leaving its last tenth for the processors to work on the last faults.
    window = max(plan.feed_seconds * 0.9, 1.0)
    return sorted((rng.uniform(0, window), kind, target) for kind, target in faults)


def run_chaos(
    base: Settings,
    admin_url: str,
    plan: ChaosPlan,
    restarts: bool,
    say: Callable[[str], None] = print,
    keep: str = "never",
) -> ChaosReport:
    """One chaos run in a sandbox of its own (topics and database), removed afterwards
    unless `keep` is "always", or "failed" and the run failed (to look into it).
    `restarts`: the broker and PostgreSQL may be restarted (the local stack only)."""
    started = time.monotonic()
    codec = Codec.load()
    # Reviews may wait for their decision while approve restarts after a broker restart;
    # refusing them as unknown after the default 5 minutes would be a false alarm.
    settings = sandbox.create(base, admin_url, "chaos", review_wait_s=1800.0)
    workdir = base.home / "logs" / "chaos" / settings.topic_prefix.rstrip(".")
    workdir.mkdir(parents=True, exist_ok=True)
    say(
        f"chaos run {settings.topic_prefix}: {plan.cases} cases at {plan.rate:g}/s, "
        f"{plan.kills_per_component} kill(s) per component"
        + (", broker and PostgreSQL restarts" if restarts else ", no service restarts")
        + f"; logs in {workdir}"
    )
    components = {name: Component(name, settings, workdir) for name in COMPONENTS}
    watcher = Watcher(components.values())
    operators = Operators(settings, codec, plan.reject_one_in)
    history, live = workload(plan)
    feeder = Feeder(settings, codec, live, plan.rate)
    probe = Probe(settings)
    faults: list[FaultRecord] = []
    notes: list[str] = []
    verdict: Verdict | None = None
    try:
        with Downstream() as downstream:
            publish_policy(settings, codec, load_policy_text(chaos_policy(downstream.url)), "chaos")
            _send_all(settings, codec, history)
            for c in components.values():
                c.start()
            watcher.start()
            operators.start()
            if not _all_joined(probe, plan.startup_timeout_s):
                notes.append(f"components did not all start within {plan.startup_timeout_s:.0f}s")
            say(f"all components running after {time.monotonic() - started:.0f}s; feeding")
            feeder.start()
            faults = _inject(plan, restarts, base, components, probe, started, say, notes)
            feeder.join()
            notes += feeder.failed
            say(f"fed {feeder.sent} cases; waiting for the pipeline to drain")
            if not _drain(probe, operators, plan.drain_timeout_s):
                notes.append(f"the pipeline did not drain within {plan.drain_timeout_s:.0f}s")
            operators.halt.set()
            operators.join(60)
            notes += operators.failed
            notes += [f"no eligible operators for {r}" for r in operators.unreviewable]
            # Components first: the watcher would otherwise see them exit and restart them.
            for c in components.values():
                c.stop()
            watcher.halt.set()
            watcher.join(5)
            say("checking the topics and the tables")
            verdict = check(settings, codec, downstream, operators.planned, replay=plan.replay)
    finally:
        feeder.halt.set()
        operators.halt.set()
        for c in components.values():
            c.stop()
        watcher.halt.set()
        probe.close()
        if verdict is None and keep != "always":  # the run broke off: nothing to look at
            sandbox.destroy(base, admin_url, [settings])
    report = ChaosReport(
        plan=plan,
        prefix=settings.topic_prefix,
        faults=faults,
        unplanned_exits={c.name: c.unplanned_exits for c in components.values()},
        kills={c.name: c.kills for c in components.values()},
        verdict=verdict,
        elapsed_s=time.monotonic() - started,
        sent=feeder.sent + len(history),
        reviews_sent=operators.sent,
        notes=notes,
    )
    if keep == "always" or (keep == "failed" and not report.ok):
        say(f"kept the sandbox: topics {settings.topic_prefix}*, database {settings.db_name}")
    else:
        sandbox.destroy(base, admin_url, [settings])
    return report


def _send_all(settings: Settings, codec: Codec, events: list[Event]) -> None:
    producer = Producer(producer_config(settings))
    failed: list[str] = []
    for e in events:
        value, headers = codec.encode(e)
        _produce(
            producer,
            settings.topic(produced_to(e)),
            e.case_id,
            value,
            headers,
            lambda err, _m: failed.append(err.str()) if err else None,
        )
    if producer.flush(120) or failed:
        raise RuntimeError(f"history not acknowledged: {failed[:3]}")


def _all_joined(probe: Probe, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        positions = [probe.position(c) for c in COMPONENTS]
        if all(p is not None and p.members for p in positions):
            return True
        time.sleep(1.0)
    return False


def _inject(
    plan: ChaosPlan,
    restarts: bool,
    base: Settings,
    components: dict[str, Component],
    probe: Probe,
    started: float,
    say: Callable[[str], None],
    notes: list[str],
) -> list[FaultRecord]:
    """Inject the scheduled faults. A component is killed again only once it recovered
    from its last kill; the broker and PostgreSQL are restarted only when every earlier
    fault has recovered, so that each recovery time belongs to one fault."""
    rng = random.Random(plan.seed)
    plan_start = time.monotonic()
    pending = schedule(plan, restarts, rng)
    done: list[FaultRecord] = []
    active: list[FaultRecord] = []
    while pending or active:
        now = time.monotonic()
        for fault in list(active):
            if fault.check(probe, now):
                active.remove(fault)
                say(f"  {fault.kind} of {fault.target}: recovered in {fault.recovered_s:.1f}s")
            elif now - fault.started - fault.outage_s > plan.recovery_timeout_s:
                # (counted from when the restarted service answered again)
                active.remove(fault)
                say(
                    f"  {fault.kind} of {fault.target}: NOT recovered after "
                    f"{plan.recovery_timeout_s:.0f}s"
                )
                notes.append(f"gave up injecting after {fault.kind} of {fault.target}")
                return done
        if pending and now - plan_start >= pending[0][0]:
            _due, kind, target = pending[0]
            busy = {t for f in active for t in f.affected}
            service = kind != "sigkill"
            if (service and not active) or (
                not service and target not in busy and not any(f.kind != "sigkill" for f in active)
            ):
                pending.pop(0)
                fault = _fault(kind, target, base, components, probe, started)
                say(f"{fault.at_s:6.1f}s  {kind} of {target}")
                done.append(fault)
                active.append(fault)
                continue
        time.sleep(0.5)
    return done


def _fault(
    kind: str,
    target: str,
    base: Settings,
    components: dict[str, Component],
    probe: Probe,
    started: float,
) -> FaultRecord:
    affected = (
        (target,)
        if kind == "sigkill"
        else (COMPONENTS if kind == "broker restart" else (READ_MODELS,))
    )
    fault = FaultRecord(kind, target, time.monotonic() - started, affected)
    fault.before = {name: probe.position(name) for name in affected}
    fault.pending = set(affected)
    fault.started = time.monotonic()
    if kind == "sigkill":
        components[target].kill_and_restart()
    elif kind == "broker restart":
        fault.outage_s = restart_kafka(base)
    else:
        fault.outage_s = restart_postgres(base)
    return fault


def _drain(probe: Probe, operators: Operators, timeout_s: float) -> bool:
    """Wait until every component has read everything and the operators have reviewed
    every item; twice in a row, a few seconds apart (a review makes more work)."""
    deadline = time.monotonic() + timeout_s
    calm = 0
    while time.monotonic() < deadline:
        positions = [probe.position(c) for c in COMPONENTS]
        idle = all(p is not None and p.caught_up for p in positions) and operators.at_end
        calm = calm + 1 if idle else 0
        if calm >= 2:
            return True
        time.sleep(3.0)
    return False


# --- the report -------------------------------------------------------------------------


def render(report: ChaosReport, out: Console) -> None:
    v = report.verdict
    title = (
        f"chaos run: {report.plan.cases} live cases (+{report.plan.history} history), "
        f"{len(report.faults)} faults, {report.elapsed_s:.0f}s"
    )
    faults = Table("#", "at", "fault", "target", "service down", "recovered in", title=title)
    for i, f in enumerate(report.faults, 1):
        faults.add_row(
            str(i),
            f"{f.at_s:.0f}s",
            f.kind,
            f.target,
            f"{f.outage_s:.1f}s" if f.outage_s else "—",
            f"{f.recovered_s:.1f}s" if f.recovered_s is not None else "[red]NO[/]",
        )
    out.print(faults)
    summary = Table("figure", "value", title="summary")
    times = sorted(f.recovered_s for f in report.faults if f.recovered_s is not None)
    rows: list[tuple[str, str]] = [
        ("faults injected", str(len(report.faults))),
        ("  SIGKILLs per component", ", ".join(f"{k} {n}" for k, n in report.kills.items())),
        (
            "  service restarts",
            ", ".join(f.target for f in report.faults if f.kind != "sigkill") or "none",
        ),
        (
            "recovery time (median / max)",
            f"{times[len(times) // 2]:.1f}s / {times[-1]:.1f}s" if times else "—",
        ),
        ("unplanned exits", str(sum(len(c) for c in report.unplanned_exits.values()))),
        ("upstream events sent", str(report.sent)),
        ("reviews sent by operators", str(report.reviews_sent)),
    ]
    if v is not None:
        rows += [
            ("events on the topics", str(v.records)),
            ("lost", str(v.lost)),
            ("duplicated", str(v.duplicated)),
            ("redelivered copies (dropped by event_id)", str(sum(v.redelivered.values()))),
            ("dead-lettered", str(v.dead_lettered)),
            ("reviews denied", str(v.review_denials)),
            (
                "downstream: calls / keys / performed / repeats / conflicts",
                f"{v.downstream['calls']} / {v.downstream['keys']} / {v.downstream['performed']} / "
                f"{v.downstream['repeats_answered_from_store']} / "
                f"{v.downstream['conflicting_keys']}",
            ),
            (
                "casegate audit verify",
                ("ok: " if v.audit_verify[0] else "FAILED: ") + v.audit_verify[1],
            ),
            (
                "replay = live read models",
                "yes"
                if not any(v.replay.values())
                else f"NO {v.replay}"
                if v.replay
                else "not run",
            ),
        ]
    for name, value in rows:
        summary.add_row(name, value)
    out.print(summary)
    if v is not None:
        stages = Table("check", "expected", "lost", "duplicated", title="per stage")
        for s in v.stages:
            stages.add_row(s.name, str(s.expected), str(s.lost), str(s.duplicated))
        out.print(stages)
    problems = report.problems()
    out.print("[green]PASSED[/]" if not problems else "[red]FAILED[/]:\n  " + "\n  ".join(problems))


def to_json(report: ChaosReport) -> dict[str, Any]:
    v = report.verdict
    return {
        "plan": asdict(report.plan),
        "prefix": report.prefix,
        "elapsed_s": report.elapsed_s,
        "faults": [
            {
                "kind": f.kind,
                "target": f.target,
                "at_s": f.at_s,
                "service_down_s": f.outage_s,
                "recovered_s": f.recovered_s,
            }
            for f in report.faults
        ],
        "kills": report.kills,
        "unplanned_exits": report.unplanned_exits,
        "upstream_sent": report.sent,
        "reviews_sent": report.reviews_sent,
        "verdict": None
        if v is None
        else {
            "records": v.records,
            "lost": v.lost,
            "duplicated": v.duplicated,
            "redelivered": v.redelivered,
            "dead_lettered": v.dead_lettered,
            "review_denials": v.review_denials,
            "downstream": v.downstream,
            "audit_verify": list(v.audit_verify),
            "replay_differences": v.replay,
            "stages": [asdict(s) for s in v.stages],
        },
        "problems": report.problems(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cases", type=int, help="live cases (default 20000; --quick 300)")
    parser.add_argument("--rate", type=float, help="live cases per second")
    parser.add_argument("--kills", type=int, help="SIGKILLs per component")
    parser.add_argument("--quick", action="store_true", help="the short variant (~2 minutes)")
    parser.add_argument(
        "--no-restarts",
        action="store_true",
        help="kill components only; never restart the broker or PostgreSQL",
    )
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--keep",
        choices=("never", "failed", "always"),
        default="never",
        help="keep the sandbox (topics, database) for inspection",
    )
    args = parser.parse_args(argv)
    plan = ChaosPlan.quick() if args.quick else ChaosPlan()
    changes: dict[str, Any] = {"seed": args.seed}
    if args.cases is not None:
        changes["cases"] = args.cases
    if args.rate is not None:
        changes["rate"] = args.rate
    if args.kills is not None:
        changes["kills_per_component"] = args.kills
    plan = replace(plan, **changes)
    logging.basicConfig(level=logging.WARNING)
    # The probe's aiokafka clients complain while the broker restarts, which is the point.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    out = Console()
    from infra.bootstrap import services_up

    base = Settings()
    services_up(base, lambda line: None)
    # The reviews it submits carry derived ids: the same key as the processors under test.
    install_event_id_key(base)
    restarts = not args.no_restarts and can_restart_services(base)
    if not args.no_restarts and not restarts:
        out.print(
            "the broker or PostgreSQL is not the project's local process: "
            "SIGKILLs only, no service restarts"
        )
    report = run_chaos(
        base, sandbox.server_admin_url(base), plan, restarts, say=out.print, keep=args.keep
    )
    render(report, out)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"chaos-{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(to_json(report), indent=2, default=str))
    out.print(f"results written to {path}")
    raise SystemExit(0 if report.ok else 1)
