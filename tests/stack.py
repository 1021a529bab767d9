"""The real Kafka broker and PostgreSQL the integration tests run against.

Order of preference: the environment names a stack (KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL)
→ use it; a Docker engine answers → testcontainers; otherwise the project's local processes
(started here if not running, and stopped at the end if this session started them).
A missing broker is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
from pydantic import SecretStr

from infra import sandbox
from infra.secrets import install_event_id_key
from infra.settings import Settings


@dataclass
class Stack:
    """Where the services are; ``isolated()`` hands out a fresh prefix and database."""

    base: Settings
    admin_url: str  # a superuser URL on the server's maintenance database
    kind: str
    sandboxes: list[Settings] = field(default_factory=list)

    def isolated(self, **overrides: object) -> Settings:
        """Settings with their own topic prefix and their own freshly migrated database."""
        settings = sandbox.create(self.base, self.admin_url, "test", **overrides)
        self.sandboxes.append(settings)
        return settings

    def cleanup(self) -> None:
        sandbox.destroy(self.base, self.admin_url, self.sandboxes)


def _keyed(base: Settings) -> Settings:
    """``base`` with the deployment's event-id key named explicitly (so every process a
    test spawns gets it through ``child_env``) and installed in the test process, which
    predicts derived ids and submits reviews under the same key."""
    key = install_event_id_key(base)
    return base.model_copy(update={"event_id_key": SecretStr(key.decode())})


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def open_stack() -> Iterator[Stack]:
    base = _keyed(Settings())
    if not base.local_kafka and not base.local_postgres:
        yield Stack(base, sandbox.server_admin_url(base), "environment")
        return
    if _docker_answers() and os.environ.get("CASEGATE_TEST_LOCAL") != "1":
        yield from _containers(base)
        return
    yield from _local(base)


def _containers(base: Settings) -> Iterator[Stack]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        PostgresContainer("postgres:16", driver=None) as pg,
    ):
        admin = pg.get_connection_url()
        # The application never connects as the superuser (infra.db.check_app_role).
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE ROLE casegate_app LOGIN PASSWORD 'casegate_app'")
        app = psycopg.conninfo.make_conninfo(admin, user="casegate_app", password="casegate_app")
        settings = base.model_copy(
            update={
                "kafka_bootstrap_servers": kafka.get_bootstrap_server(),
                "database_url": app,
                "admin_database_url": admin,
            }
        )
        stack = Stack(settings, sandbox.server_admin_url(settings), "testcontainers")
        yield stack


def _local(base: Settings) -> Iterator[Stack]:
    from infra.kafka_local import LocalKafka
    from infra.postgres_local import LocalPostgres

    kafka, pg = LocalKafka(base), LocalPostgres(base)
    started_kafka = not kafka.answers()
    started_pg = not pg.running()
    kafka.up()
    pg.up()
    try:
        yield Stack(base, sandbox.server_admin_url(base), "local processes")
    finally:
        if started_kafka:
            kafka.down()
        if started_pg:
            pg.down()


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a child process (a component under test) to see these settings."""
    return sandbox.child_env(settings)
