"""Fault injection for the chaos harness: casegate's components as child processes that can
be SIGKILLed and started again, restarts of the local Kafka broker and PostgreSQL, and the
probes that tell when the system has recovered from each fault.

Recovery is read from where the system records its own progress, never from log lines:
a processor's committed consumer-group offsets on its input topics, the read models'
`projection_offsets` in PostgreSQL. A killed component has recovered when a new member
(the restarted process) holds its group's partitions and its position has moved past
where it was at the kill, or it has caught up with the end of its inputs.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from infra.db import database_urls
from infra.kafka import common_config
from infra.sandbox import child_env
from infra.settings import Settings
from infra.topics import TOPICS

log = logging.getLogger(__name__)

# Each component and the topics its consumer group reads (its input). The read models
# read every topic and keep their position in PostgreSQL, not in the group.
PROCESSOR_INPUTS: dict[str, tuple[str, ...]] = {
    "intake": ("cases",),
    "recommend": ("cases",),
    "guard": ("cases", "recommendations"),
    "approve": ("decisions", "reviews"),
    "execute": ("executions",),
}
READ_MODELS = "readmodels"
COMPONENTS: tuple[str, ...] = (*PROCESSOR_INPUTS, READ_MODELS)


def group_of(settings: Settings, component: str) -> str:
    """The Kafka consumer group a component's workers share."""
    if component == READ_MODELS:
        return f"{settings.topic_prefix}projection.{READ_MODELS}"
    return f"{settings.topic_prefix}{component}"  # faust: the app id


# A component must not outlive a harness that was killed before it could stop them
# (SIGKILL, a test timeout): setpriv (util-linux) asks the kernel to kill it then.
DIE_WITH_PARENT: tuple[str, ...] = (
    ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") else ()
)


def command_of(component: str) -> list[str]:
    module = "projections.worker" if component == READ_MODELS else "processors.worker"
    return [sys.executable, "-m", module, component]


@dataclass
class Component:
    """One component's process: started, killed and started again by the harness, or by
    the watcher when it exits on its own (as `casegate run`'s supervisor would)."""

    name: str
    settings: Settings
    workdir: Path  # logs; faust's data folder lands here too, not in the project root
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    unplanned_exits: list[int] = field(default_factory=list)  # exit codes
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with self.lock:
            self._spawn()

    def _spawn(self) -> None:
        self.starts += 1
        log_path = self.workdir / f"{self.name}-{self.starts}.log"
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [*DIE_WITH_PARENT, *command_of(self.name)],
                env=child_env(self.settings),
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill_and_restart(self) -> None:
        """SIGKILL (no chance to flush, commit or leave the group), then a fresh process."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(30)
            self.kills += 1
            self._spawn()

    def restart_if_exited(self) -> int | None:
        """Start again a process that ended without being asked to; its exit code."""
        with self.lock:
            if self.proc is None or self.proc.poll() is None:
                return None
            code = self.proc.returncode
            self.unplanned_exits.append(code)
            log.warning("%s exited on its own with %s; restarting it", self.name, code)
            self._spawn()
            return code

    def stop(self, grace_s: float = 30.0) -> None:
        with self.lock:
            proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Watcher(threading.Thread):
    """Restarts components that exit on their own, and counts those exits."""

    def __init__(self, components: Iterable[Component], interval_s: float = 0.5) -> None:
        super().__init__(daemon=True, name="chaos-watcher")
        self.components = list(components)
        self.interval_s = interval_s
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval_s):
            for c in self.components:
                c.restart_if_exited()


@dataclass(frozen=True)
class Position:
    consumed: int  # sum of committed offsets over the component's input partitions
    end: int  # sum of the high watermarks of the same partitions
    members: frozenset[str]  # member ids in the group (empty when unknown)

    @property
    def caught_up(self) -> bool:
        return self.consumed >= self.end


class Probe:
    """Reads every component's position; any failure (a broker or a database that is down)
    reads as "unknown", which never counts as recovered.

    One admin client, without a Python logger (librdkafka's own logging is turned off:
    a broker that is away is expected here). A logger callback, or destroying a client
    that had one, is where confluent-kafka has crashed the interpreter; after a failure the
    client is replaced, since one that lived through a broker restart kept timing out.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db_url = database_urls(settings).app
        self._partitions: dict[str, list[int]] = {}
        self.admin = self._admin()

    def _admin(self) -> AdminClient:
        return AdminClient({**common_config(self.settings), "log_level": 0})

    def close(self) -> None:
        self.admin = self._admin()  # the old one is destroyed once nothing refers to it

    def partitions(self, topic: str) -> list[int]:
        name = self.settings.topic(topic)
        if topic not in self._partitions:
            meta = self.admin.list_topics(name, timeout=5).topics[name]
            self._partitions[topic] = sorted(meta.partitions)
        return self._partitions[topic]

    def ends(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        """Where a read-committed consumer of each partition reaches the end."""
        wanted = {
            TopicPartition(self.settings.topic(topic), p): OffsetSpec.latest()
            for topic in topics
            for p in self.partitions(topic)
        }
        futures = self.admin.list_offsets(
            wanted, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=5
        )
        return {(tp.topic, tp.partition): f.result(10).offset for tp, f in futures.items()}

    def committed(self, component: str) -> dict[tuple[str, int], int]:
        if component == READ_MODELS:
            with psycopg.connect(self.db_url, connect_timeout=3) as conn:
                rows = conn.execute(
                    "SELECT topic, partition, next_offset FROM projection_offsets "
                    "WHERE consumer = %s",
                    (f"projection.{READ_MODELS}",),
                ).fetchall()
            return {(t, p): o for t, p, o in rows}
        request = ConsumerGroupTopicPartitions(group_of(self.settings, component))
        [future] = self.admin.list_consumer_group_offsets([request]).values()
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in future.result(10).topic_partitions
            if tp.offset >= 0
        }

    def members(self, component: str) -> frozenset[str]:
        [future] = self.admin.describe_consumer_groups(
            [group_of(self.settings, component)], request_timeout=5
        ).values()
        group = future.result(10)
        return frozenset(m.member_id for m in group.members if m.assignment.topic_partitions)

    def inputs(self, component: str) -> tuple[str, ...]:
        if component == READ_MODELS:
            return tuple(t.name for t in TOPICS)
        return PROCESSOR_INPUTS[component]

    def position(self, component: str) -> Position | None:
        try:
            ends = self.ends(self.inputs(component))
            committed = self.committed(component)
            members = self.members(component)
        except (KafkaException, psycopg.Error, OSError, KeyError) as exc:
            log.debug("no position for %s yet: %s", component, exc)
            if not isinstance(exc, psycopg.Error):
                self.admin = self._admin()
            return None
        consumed = sum(min(committed.get(tp, 0), end) for tp, end in ends.items())
        return Position(consumed, sum(ends.values()), members)


@dataclass
class FaultRecord:
    """One injected fault and how long the system took to recover from it."""

    kind: str  # sigkill | broker restart | postgres restart
    target: str
    at_s: float  # since the start of the run
    affected: tuple[str, ...]
    before: dict[str, Position | None] = field(default_factory=dict)
    outage_s: float = 0.0  # how long the service itself was down (restarts only)
    recovered_s: float | None = None  # from the fault until every affected one recovered
    pending: set[str] = field(default_factory=set)
    last: dict[str, Position | None] = field(default_factory=dict)  # as last probed
    started: float = 0.0  # monotonic time of the fault

    def check(self, probe: Probe, now: float) -> bool:
        """Mark recovered components; True once all affected ones are."""
        for name in list(self.pending):
            self.last[name] = position = probe.position(name)
            if recovered(self.before.get(name), position, self.kind == "sigkill"):
                self.pending.discard(name)
        if not self.pending and self.recovered_s is None:
            self.recovered_s = now - self.started
        return not self.pending


def recovered(before: Position | None, now: Position | None, new_member: bool) -> bool:
    """Progress since the fault: the position moved on (or there was nothing left to
    read); after a kill, also a member that is not the killed process holds partitions."""
    if now is None or not now.members:
        return False
    if new_member and before is not None and now.members & before.members:
        return False
    moved = before is None or now.consumed > before.consumed
    return moved or now.caught_up


def restart_kafka(base: Settings) -> float:
    """Stop the local broker (SIGTERM, as an operator or a rolling upgrade would) and start
    it on the same data and ports; the seconds it was unavailable."""
    from infra.kafka_local import LocalKafka

    kafka = LocalKafka(base)
    started = time.monotonic()
    kafka.down()
    kafka.up()
    return time.monotonic() - started


def restart_postgres(base: Settings) -> float:
    """`pg_ctl stop -m fast` (open connections are cut) and start again; seconds down."""
    from infra.postgres_local import LocalPostgres

    pg = LocalPostgres(base)
    started = time.monotonic()
    pg.down()
    pg.up()
    return time.monotonic() - started


def can_restart_services(base: Settings) -> bool:
    """Only the project's own local broker and server are restarted, never a stack the
    environment or testcontainers provided."""
    if not (base.local_kafka and base.local_postgres):
        return False
    from infra.kafka_local import LocalKafka
    from infra.postgres_local import LocalPostgres

    return LocalKafka(base).running_pid() is not None and LocalPostgres(base).running()
