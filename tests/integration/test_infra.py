"""The local stack, topics and migrations behave as `casegate up` promises."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from infra.db import MigrationChanged, database_urls, migrate
from infra.kafka_local import LocalKafka
from infra.postgres_local import LocalPostgres
from infra.settings import Settings
from infra.setup_errors import SetupError
from infra.topics import TOPICS, describe_topics, ensure_topics
from tests.stack import Stack


def test_topics_exist_with_partitions_and_configs(settings: Settings) -> None:
    states = {s.name: s for s in ensure_topics(settings)}  # second call: nothing to create
    assert set(states) == {settings.topic(t.name) for t in TOPICS}
    assert not any(s.created for s in states.values())
    assert states[settings.topic("cases")].partitions == settings.partitions
    assert states[settings.topic("policy")].partitions == 1
    # Every policy version stays, each under its own key (never compacted away).
    assert states[settings.topic("policy")].configs.get("cleanup.policy", "delete") == "delete"
    assert states[settings.topic("policy")].configs["retention.ms"] == "-1"
    assert states[settings.topic("cases")].configs["retention.ms"] == "-1"
    assert describe_topics(settings) == list(states.values())


def test_migrations_are_idempotent_and_history_is_immutable(
    settings: Settings, tmp_path: Path
) -> None:
    urls = database_urls(settings)
    assert migrate(urls) == []  # the fixture applied them already
    with psycopg.connect(urls.app) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert {"case_state", "projection_offsets", "schema_migrations"} <= tables
    (tmp_path / "001_offsets_and_case_state.sql").write_text("SELECT 'edited';")
    with pytest.raises(MigrationChanged):
        migrate(urls, folder=tmp_path)


def test_up_reuses_a_running_broker_and_database(stack: Stack) -> None:
    if stack.kind != "local processes":
        pytest.skip(f"the local-process manager is not in use when the stack is {stack.kind}")
    assert "reusing" in LocalKafka(stack.base).up()
    assert "reusing" in LocalPostgres(stack.base).up()


def test_a_port_taken_by_another_program_is_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        elsewhere = stack.base.model_copy(
            update={"home": tmp_path, "kafka_port": port, "pg_port": port}
        )
        with pytest.raises(SetupError, match=f"127.0.0.1:{port} is taken"):
            LocalKafka(elsewhere).up(wait_s=5)
        with pytest.raises(SetupError, match=f"127.0.0.1:{port} is taken"):
            LocalPostgres(elsewhere).up()
