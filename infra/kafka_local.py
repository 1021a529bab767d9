"""A local single-node Apache Kafka (KRaft, broker+controller in one JVM) for development and tests.

The broker's jars come from Maven Central through ``infra/pom.xml`` into a cache folder once;
later runs reuse them. Data, config and logs live under ``<home>/kafka``.
"""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from infra.errors import SetupError
from infra.procs import port_open, read_pid, require_tool, terminate
from infra.settings import PROJECT_ROOT, Settings

POM = PROJECT_ROOT / "infra" / "pom.xml"
JAVA_HINT = "Install Java 17 or newer, e.g. `apt-get install -y openjdk-17-jre-headless`."
MAVEN_HINT = "Install Maven, e.g. `apt-get install -y maven` (it fetches the broker's jars)."


LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass(frozen=True)
class LocalKafka:
    """Paths and commands of the project-local broker."""

    settings: Settings

    @property
    def root(self) -> Path:
        return self.settings.home / "kafka"

    @property
    def libs(self) -> Path:
        return self.settings.home / "cache" / f"kafka-{kafka_version()}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "logs" / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def config_file(self) -> Path:
        return self.root / "server.properties"

    # -- lifecycle -----------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Resolve the broker's classpath once; a marker file makes reruns free."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        require_tool("java", JAVA_HINT)
        mvn = require_tool("mvn", MAVEN_HINT)
        staging = self.libs.with_name(self.libs.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dkafka.libdir={staging}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SetupError(
                "Maven could not resolve the Kafka broker jars:\n"
                + proc.stdout[-2000:]
                + proc.stderr[-2000:],
                "Check that Maven Central is reachable; try another 4.x release in infra/pom.xml.",
            )
        (staging / ".complete").write_text(kafka_version())
        staging.rename(self.libs)
        return self.libs

    def answers(self, timeout_s: float = 2.0, admin: AdminClient | None = None) -> bool:
        """True when a Kafka broker answers a metadata request on the configured port.

        `admin`: a client to ask with, kept by the caller across repeated questions. A
        client destroyed while its metadata request is still in flight (a broker whose port
        is open but which is still loading its partitions does not answer in time) can
        crash the interpreter inside librdkafka, so a waiting loop must reuse one.
        """
        admin = admin or self._probe_client()
        try:
            admin.list_topics(timeout=timeout_s)
        except Exception:
            return False
        return True

    def _probe_client(self) -> AdminClient:
        return AdminClient(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                # Silence librdkafka itself (a broker that is not up is the question here)
                # rather than route its logs to a Python logger, which a client destroyed
                # while its threads still log can crash on.
                "log_level": 0,
                "socket.connection.setup.timeout.ms": 1000,
            }
        )

    def running_pid(self) -> int | None:
        return read_pid(self.pid_file)

    def up(self, wait_s: float = 120.0) -> str:
        """Start the broker unless one already answers; returns what happened, for the CLI."""
        s = self.settings
        if self.answers():
            owner = "ours" if self.running_pid() else "already running"
            return f"Kafka at {s.bootstrap_servers} is {owner}: reusing it"
        for port in (s.kafka_port, s.kafka_controller_port):
            if port_open(port) and self.running_pid() is None:
                raise SetupError(
                    f"Port 127.0.0.1:{port} is taken by a program that is not Kafka.",
                    "Stop it, or pick free ports with CASEGATE_KAFKA_PORT / "
                    "CASEGATE_KAFKA_CONTROLLER_PORT.",
                )
        libs = self.ensure_jars()
        self._write_config()
        if not (self.data / "meta.properties").exists():
            self._format(libs)
        pid = self.running_pid() or self._spawn(libs)
        deadline = time.monotonic() + wait_s
        probe = self._probe_client()
        while time.monotonic() < deadline:
            if self.answers(timeout_s=1.0, admin=probe):
                return f"Kafka started at {s.bootstrap_servers} (pid {pid}); log: {self.log_file}"
            if read_pid(self.pid_file) is None:
                break
            time.sleep(0.5)
        raise SetupError(
            f"The Kafka broker did not come up within {wait_s:.0f}s.\n" + self._log_tail(),
            f"Read the broker log at {self.log_file}.",
        )

    def down(self) -> str:
        pid = self.running_pid()
        if pid is None:
            return "Kafka: not running"
        terminate(pid, grace_s=60.0)
        self.pid_file.unlink(missing_ok=True)
        return f"Kafka stopped (pid {pid})"

    # -- internals -----------------------------------------------------------------------
    def _write_config(self) -> None:
        s = self.settings
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},"
            f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data),
            # casegate creates its topics explicitly, each with the partition count it needs.
            "auto.create.topics.enable": "false",
            # Single node: internal topics cannot be replicated.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Consumers joining a group should not wait 3 s on a dev/test broker.
            "group.initial.rebalance.delay.ms": "0",
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.root / "log4j2.properties").write_text(LOG4J2.format(log=self.log_file))

    def _java(self, libs: Path) -> list[str]:
        java = require_tool("java", JAVA_HINT)
        return [
            java,
            f"-Xmx{self.settings.kafka_heap}",
            f"-Xms{self.settings.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp",
            f"{libs}/*",
        ]

    def _format(self, libs: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        cmd = [
            *self._java(libs),
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SetupError(
                "Formatting KRaft storage failed:\n" + proc.stdout + proc.stderr,
                f"Remove {self.data} and try again.",
            )

    def _spawn(self, libs: Path) -> int:
        out = (self.root / "logs" / "stdout.log").open("ab")
        # A session of its own, so Ctrl-C in the shell that ran `casegate up` does not stop it.
        proc = subprocess.Popen(
            [*self._java(libs), "kafka.Kafka", str(self.config_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def _log_tail(self, lines: int = 30) -> str:
        texts = []
        for f in (self.log_file, self.root / "logs" / "stdout.log"):
            if f.exists():
                texts.extend(f.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts)


def kafka_version() -> str:
    """The Kafka release pinned in infra/pom.xml."""
    text = POM.read_text()
    start = text.index("<kafka.version>") + len("<kafka.version>")
    return text[start : text.index("</kafka.version>", start)]
