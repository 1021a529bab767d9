"""A local single-node Apache Kafka (KRaft, broker+controller in one JVM) for development and tests.

The broker's jars come from Maven Central through ``infra/pom.xml`` into a cache folder once;
later runs reuse them. Data, config and logs live under ``<home>/kafka``.

It authenticates every client (SASL/SCRAM-SHA-512 on 127.0.0.1) and authorizes each
request with KRaft's StandardAuthorizer against the ACLs of `infra.acl`; `admin` is its
only super user. The passwords are generated on the first `up` into
``<home>/secrets/kafka.json`` (mode 0600); admin's is written into the storage when it is
formatted, the other principals' are (re)set through the Admin API on every `up`. A data
folder formatted without them (an older, PLAINTEXT, local broker) is formatted again:
this is a development broker, and its topics are re-created by `casegate up`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from infra.acl import NAMES
from infra.kafka import common_config
from infra.kafka_auth import ADMIN, LOCAL_MECHANISM, as_principal, local_passwords, secrets_file
from infra.procs import port_open, read_pid, require_tool, terminate
from infra.secrets import new_password, write_private
from infra.settings import PROJECT_ROOT, Settings
from infra.setup_errors import SetupError

POM = PROJECT_ROOT / "infra" / "pom.xml"
JAVA_HINT = "Install Java 17 or newer, e.g. `apt-get install -y openjdk-17-jre-headless`."
MAVEN_HINT = "Install Maven, e.g. `apt-get install -y maven` (it fetches the broker's jars)."
# What the data folder was formatted for; another value (or none: a PLAINTEXT broker of an
# earlier casegate) means it is formatted again.
SECURITY_LAYOUT = "sasl-scram-sha-512+standard-authorizer/1"
SCRAM_ITERATIONS = 4096  # the broker's minimum: one PBKDF2 per connection, on connect only


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

    @property
    def security_marker(self) -> Path:
        return self.data / "casegate-security"

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
        try:
            admin = admin or self._probe_client()
        except SetupError:
            return False  # no credentials yet: no broker of ours was ever set up here
        try:
            admin.list_topics(timeout=timeout_s)
        except Exception:
            return False
        return True

    def _admin_settings(self) -> Settings:
        return as_principal(self.settings, ADMIN)

    def _probe_client(self) -> AdminClient:
        return AdminClient(
            {
                **common_config(self._admin_settings()),
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
        passwords = self.ensure_passwords()
        note = ""
        if self._formatted() and not self._secured(passwords):
            self._discard_insecure_data()
            note = (
                f"Kafka's data in {self.data} was made without authentication (an older "
                "casegate): formatted again, its topics are new and empty (read models "
                "kept in PostgreSQL describe the old ones; `make down`, remove "
                f"{self.settings.home} for a clean start).\n"
            )
        if self.answers():
            owner = "ours" if self.running_pid() else "already running"
            self.ensure_users(passwords)
            return f"Kafka at {s.bootstrap_servers} is {owner}: reusing it"
        for port in (s.kafka_port, s.kafka_controller_port):
            if port_open(port) and self.running_pid() is None:
                raise SetupError(
                    f"Port 127.0.0.1:{port} is taken by a program that is not Kafka.",
                    "Stop it, or pick free ports with CASEGATE_KAFKA_PORT / "
                    "CASEGATE_KAFKA_CONTROLLER_PORT.",
                )
        libs = self.ensure_jars()
        self._write_config(passwords[ADMIN])
        if not self._formatted():
            self._format(libs, passwords)
        pid = self.running_pid() or self._spawn(libs)
        deadline = time.monotonic() + wait_s
        probe = self._probe_client()
        while time.monotonic() < deadline:
            if self.answers(timeout_s=1.0, admin=probe):
                self.ensure_users(passwords, admin=probe)
                return (
                    f"{note}Kafka started at {s.bootstrap_servers} (pid {pid}); "
                    f"log: {self.log_file}"
                )
            if read_pid(self.pid_file) is None:
                break
            time.sleep(0.5)
        raise SetupError(
            f"The Kafka broker did not come up within {wait_s:.0f}s.\n" + self._log_tail(),
            f"Read the broker log at {self.log_file}.",
        )

    # -- principals ------------------------------------------------------------------------
    def ensure_passwords(self) -> dict[str, str]:
        """Every principal's password, generated for the ones that have none yet."""
        passwords = local_passwords(self.settings)
        missing = [name for name in NAMES if name not in passwords]
        if missing:
            passwords |= {name: new_password() for name in missing}
            write_private(secrets_file(self.settings), json.dumps(passwords, indent=2) + "\n")
        return passwords

    def ensure_users(self, passwords: dict[str, str], admin: AdminClient | None = None) -> None:
        """Set every component principal's SCRAM credential (admin's is in the storage)."""
        admin = admin or self._probe_client()
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts = [
            UserScramCredentialUpsertion(name, info, password.encode())
            for name, password in passwords.items()
            if name != ADMIN and name in NAMES
        ]
        for future in admin.alter_user_scram_credentials(upserts).values():  # type: ignore[arg-type]
            future.result(timeout=30)
        # The broker knows them once it has replayed the metadata (see infra.acl).
        users = [u.user for u in upserts]
        deadline = time.monotonic() + 30
        while True:
            # Users named: one future per user (None alone would give one for all).
            described = cast(dict[str, Future[Any]], admin.describe_user_scram_credentials(users))
            if all(_has_credential(f) for f in described.values()):
                return
            if time.monotonic() > deadline:
                raise SetupError("The broker did not take the principals' SCRAM credentials.")
            time.sleep(0.2)

    def _formatted(self) -> bool:
        return (self.data / "meta.properties").exists()

    def _secured(self, passwords: dict[str, str]) -> bool:
        marker = self.security_marker
        return marker.exists() and marker.read_text() == _layout(passwords[ADMIN])

    def _discard_insecure_data(self) -> None:
        """Stop our broker if it runs on the old data, and drop the data (see module doc)."""
        pid = self.running_pid()
        if pid is not None:
            terminate(pid, grace_s=60.0)
            self.pid_file.unlink(missing_ok=True)
        shutil.rmtree(self.data)

    def down(self) -> str:
        pid = self.running_pid()
        if pid is None:
            return "Kafka: not running"
        terminate(pid, grace_s=60.0)
        self.pid_file.unlink(missing_ok=True)
        return f"Kafka stopped (pid {pid})"

    # -- internals -----------------------------------------------------------------------
    def _write_config(self, admin_password: str) -> None:
        s = self.settings
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        scram = f'username="{ADMIN}" password="{admin_password}";'
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"CLIENT://127.0.0.1:{s.kafka_port},"
            f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "CLIENT",
            "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            # Clients: SCRAM, credentials in the cluster metadata (set by admin).
            "listener.name.client.sasl.enabled.mechanisms": LOCAL_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": LOCAL_MECHANISM,
            "listener.name.client.scram-sha-512.sasl.jaas.config": (
                f"org.apache.kafka.common.security.scram.ScramLoginModule required {scram}"
            ),
            # The controller cannot use SCRAM (its credentials live in the metadata it
            # serves): PLAIN with admin alone, so no client reaches it unauthenticated.
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'{scram[:-1]} user_{ADMIN}="{admin_password}";'
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
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
        # It holds admin's password: private from its creation.
        write_private(self.config_file, "".join(f"{k}={v}\n" for k, v in props.items()))
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

    def _format(self, libs: Path, passwords: dict[str, str]) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        admin = f"{LOCAL_MECHANISM}=[name={ADMIN},password={passwords[ADMIN]}]"
        cmd = [
            *self._java(libs),
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
            # Admin's credential must exist before the broker serves its first request.
            "--add-scram",
            admin,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).replace(passwords[ADMIN], "***")
            raise SetupError(
                "Formatting KRaft storage failed:\n" + output,
                f"Remove {self.data} and try again.",
            )
        write_private(self.security_marker, _layout(passwords[ADMIN]))

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


def _has_credential(described: Future[Any]) -> bool:
    try:
        return bool(described.result(timeout=30).scram_credential_infos)
    except KafkaException:  # RESOURCE_NOT_FOUND: not (yet) known to the broker
        return False


def _layout(admin_password: str) -> str:
    """The marker of a data folder formatted with this layout and this admin password."""
    digest = hashlib.sha256(admin_password.encode()).hexdigest()
    return f"{SECURITY_LAYOUT}\nadmin-sha256={digest}\n"


def kafka_version() -> str:
    """The Kafka release pinned in infra/pom.xml."""
    text = POM.read_text()
    start = text.index("<kafka.version>") + len("<kafka.version>")
    return text[start : text.index("</kafka.version>", start)]
