"""The real Kafka broker and PostgreSQL the integration tests run against.

Order of preference: the environment names a stack (KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL)
→ use it; a Docker engine answers → testcontainers; otherwise the project's local processes
(started here if not running, and stopped at the end if this session started them).
A missing broker is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
from confluent_kafka.admin import AdminClient
from psycopg import sql

from infra.db import DatabaseUrls, database_urls, migrate
from infra.kafka import common_config
from infra.settings import Settings
from infra.topics import ensure_topics


@dataclass
class Stack:
    """Where the services are; ``isolated()`` hands out a fresh prefix and database."""

    base: Settings
    admin_url: str  # a superuser URL on the server's maintenance database
    kind: str
    databases: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    def isolated(self, **overrides: object) -> Settings:
        """Settings with their own topic prefix and their own freshly migrated database."""
        run = uuid.uuid4().hex[:10]
        dbname = f"casegate_test_{run}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        self.databases.append(dbname)
        self.prefixes.append(f"t{run}.")
        settings = self.base.model_copy(
            update={"topic_prefix": f"t{run}.", "db_name": dbname, **overrides}
        )
        if self.base.database_url is not None:
            settings = settings.model_copy(
                update={
                    "database_url": _with_db(self.base.database_url.get_secret_value(), dbname),
                    "admin_database_url": _with_db(self.admin_url, dbname),
                }
            )
        ensure_topics(settings)
        migrate(database_urls(settings))
        return settings

    def urls(self, settings: Settings) -> DatabaseUrls:
        return database_urls(settings)

    def cleanup(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for db in self.databases:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
                )
        admin = AdminClient(common_config(self.base))
        prefixes = tuple(self.prefixes)
        doomed = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
        if doomed:
            for future in admin.delete_topics(doomed, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()


def _with_db(url: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def open_stack() -> Iterator[Stack]:
    base = Settings()
    if not base.local_kafka and not base.local_postgres:
        assert base.database_url is not None
        admin = base.admin_database_url or base.database_url
        yield Stack(base, _with_db(admin.get_secret_value(), "postgres"), "environment")
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
        url = pg.get_connection_url()
        settings = base.model_copy(
            update={
                "kafka_bootstrap_servers": kafka.get_bootstrap_server(),
                "database_url": url,
                "admin_database_url": url,
            }
        )
        stack = Stack(settings, _with_db(url, "postgres"), "testcontainers")
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
        yield Stack(base, pg.admin_url("postgres"), "local processes")
    finally:
        if started_kafka:
            kafka.down()
        if started_pg:
            pg.down()


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a child process (a component under test) to see these settings."""
    env = dict(os.environ)
    env["CASEGATE_TOPIC_PREFIX"] = settings.topic_prefix
    env["CASEGATE_DB_NAME"] = settings.db_name
    env["CASEGATE_PARTITIONS"] = str(settings.partitions)
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    if settings.database_url is not None:
        env["DATABASE_URL"] = settings.database_url.get_secret_value()
    if settings.admin_database_url is not None:
        env["CASEGATE_ADMIN_DATABASE_URL"] = settings.admin_database_url.get_secret_value()
    return env
