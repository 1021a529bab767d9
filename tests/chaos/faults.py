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

import asyncio
import contextlib
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra.db import database_urls
from infra.kafka import aiokafka_config
from infra.sandbox import child_env
from infra.settings import PROJECT_ROOT, Settings
from infra.topics import PROJECTED

T = TypeVar("T")

log = logging.getLogger(__name__)

# Each component and the topics its consumer group reads (its input). The read models
# read every topic but the intake topic and keep their position in PostgreSQL, not in
# the group.
PROCESSOR_INPUTS: dict[str, tuple[str, ...]] = {
    "intake": ("upstream",),
    "recommend": ("cases",),
    "guard": ("recommendations",),
    "approve": ("decisions", "reviews"),
    "execute": ("executions",),
}
READ_MODELS = "readmodels"
COMPONENTS: tuple[str, ...] = (*PROCESSOR_INPUTS, READ_MODELS)


def group_of(settings: Settings, component: str) -> str:
    """The Kafka consumer group a component's workers share."""
    if component == READ_MODELS:
        return f"{settings.topic_prefix}projection.{READ_MODELS}"
    return f"{settings.topic_prefix}{component}"


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
    workdir: Path  # its logs
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    unplanned_exits: list[int] = field(default_factory=list)  # exit codes
    lock: threading.Lock = field(default_factory=threading.Lock)
    restart_at: float | None = None  # when an unplanned exit is followed by a restart

    def start(self) -> None:
        with self.lock:
            self._spawn()

    def _spawn(self) -> None:
        self.restart_at = None
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
        """Start again a process that ended without being asked to, after a pause that
        doubles with each such exit (as `casegate run`'s supervisor does); its exit code."""
        with self.lock:
            if self.proc is None or self.proc.poll() is None:
                return None
            code = self.proc.returncode
            if self.restart_at is None:
                self.unplanned_exits.append(code)
                pause = min(2.0 ** (len(self.unplanned_exits) - 1), 15.0)
                self.restart_at = time.monotonic() + pause
                log.warning(
                    "%s exited on its own with %s; restarting it in %.0fs", self.name, code, pause
                )
            if time.monotonic() < self.restart_at:
                return None
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

    Kafka is asked through aiokafka (pure Python) clients on an event loop of their own
    thread, kept for the whole run: they reconnect by themselves after the broker's
    restart. librdkafka admin clients did not do that here, and replacing them (destroying
    a client with requests still in flight) crashed the harness inside librdkafka.
    """

    def __init__(self, settings: Settings, timeout_s: float = 15.0) -> None:
        self.settings = settings
        self.db_url = database_urls(settings).app
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="chaos-probe"
        )
        self._thread.start()
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def position(self, component: str) -> Position | None:
        committed: dict[tuple[str, int], int] | None = None
        if component == READ_MODELS:
            try:
                committed = self._stored_offsets()
            except psycopg.Error as exc:
                log.debug("no position for %s yet: %s", component, exc)
                return None
        try:
            return self._call(self._position(component, committed))
        except Exception as exc:  # aiokafka's errors, timeouts: the answer is "unknown"
            log.debug("no position for %s yet: %s", component, exc)
            return None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self.timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**aiokafka_config(self.settings))
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **aiokafka_config(self.settings),
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def _close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def _position(
        self, component: str, committed: dict[tuple[str, int], int] | None
    ) -> Position:
        admin, consumer = await self._clients()
        group = group_of(self.settings, component)
        partitions = []
        for topic in self._inputs(component):
            name = self.settings.topic(topic)
            found = consumer.partitions_for_topic(name)
            if not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(name) or set()
            partitions += [AioTopicPartition(name, p) for p in sorted(found)]
        # read_committed: the end a read-committed consumer reaches (the last stable offset).
        ends = {
            (tp.topic, tp.partition): off
            for tp, off in (await consumer.end_offsets(partitions)).items()
        }
        if committed is None:
            offsets = await admin.list_consumer_group_offsets(group)
            committed = {
                (tp.topic, tp.partition): meta.offset
                for tp, meta in offsets.items()
                if meta.offset >= 0
            }
        [response] = await admin.describe_consumer_groups([group])
        members: frozenset[str] = frozenset()
        for described in response.to_object()["groups"]:
            if described["state"] == "Stable":
                members = frozenset(m["member_id"] for m in described["members"])
        consumed = sum(min(committed.get(tp, 0), end) for tp, end in ends.items())
        return Position(consumed, sum(ends.values()), members)

    def _stored_offsets(self) -> dict[tuple[str, int], int]:
        """The read models keep their position in PostgreSQL, beside their rows."""
        with psycopg.connect(self.db_url, connect_timeout=3) as conn:
            rows = conn.execute(
                "SELECT topic, partition, next_offset FROM projection_offsets WHERE consumer = %s",
                (f"projection.{READ_MODELS}",),
            ).fetchall()
        return {(t, p): o for t, p, o in rows}

    def _inputs(self, component: str) -> tuple[str, ...]:
        if component == READ_MODELS:
            return tuple(t.name for t in PROJECTED)
        return PROCESSOR_INPUTS[component]


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
    return _restart_in_child(base, "kafka")


def restart_postgres(base: Settings) -> float:
    """`pg_ctl stop -m fast` (open connections are cut) and start again; seconds down."""
    return _restart_in_child(base, "postgresql")


def _restart_in_child(base: Settings, service: str, timeout_s: float = 900.0) -> float:
    """Restart `service` from a child process (`python -m tests.chaos.faults SERVICE`).

    The start-up probes of the local broker create Kafka clients against a broker that is
    still loading, and the harness once died inside librdkafka right then; in a child, a
    crash there fails the restart, not the whole run and its evidence.
    """
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos.faults", service],
        env={**child_env(base), **_service_env(base)},
        cwd=PROJECT_ROOT,  # tests.chaos is not installed: found from the project root
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"restarting {service} failed (exit {done.returncode}): "
            f"{(done.stdout + done.stderr)[-2000:]}"
        )
    return time.monotonic() - started


def _service_env(base: Settings) -> dict[str, str]:
    """The local services' own settings, which child_env leaves to the defaults."""
    return {
        "CASEGATE_HOME": str(base.home),
        "CASEGATE_KAFKA_PORT": str(base.kafka_port),
        "CASEGATE_KAFKA_CONTROLLER_PORT": str(base.kafka_controller_port),
        "CASEGATE_PG_PORT": str(base.pg_port),
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.chaos.faults kafka|postgresql`: restart that local service (the chaos
    harness runs it as a child process)."""
    from infra.kafka_local import LocalKafka
    from infra.postgres_local import LocalPostgres

    args = sys.argv[1:] if argv is None else argv
    if args not in (["kafka"], ["postgresql"]):
        sys.exit("usage: python -m tests.chaos.faults kafka|postgresql")
    settings = Settings()
    # The broker restarts on its own data and ports; the environment's names of the
    # services would point elsewhere, and these are the project's local ones.
    local = settings.model_copy(update={"kafka_bootstrap_servers": None, "database_url": None})
    service = LocalKafka(local) if args == ["kafka"] else LocalPostgres(local)
    service.down()
    # A broker with many partitions on a busy machine loads them for minutes.
    print(service.up(wait_s=600.0) if isinstance(service, LocalKafka) else service.up())


def can_restart_services(base: Settings) -> bool:
    """Only the project's own local broker and server are restarted, never a stack the
    environment or testcontainers provided."""
    if not (base.local_kafka and base.local_postgres):
        return False
    from infra.kafka_local import LocalKafka
    from infra.postgres_local import LocalPostgres

    return LocalKafka(base).running_pid() is not None and LocalPostgres(base).running()


if __name__ == "__main__":
    main()
