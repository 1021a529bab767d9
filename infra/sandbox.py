"""Throw-away copies of casegate on a shared broker and server: their own topic prefix and
their own freshly migrated database. Tests and benchmarks use them so runs never meet."""

from __future__ import annotations

import contextlib
import os
import uuid

import psycopg
from confluent_kafka.admin import AdminClient
from psycopg import sql

from infra.acl import delete_acls, ensure_acls
from infra.db import database_urls, migrate
from infra.kafka import common_config
from infra.settings import Settings
from infra.topics import ensure_topics


def with_db(url: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def server_admin_url(base: Settings) -> str:
    """A URL with rights to create databases, on the server's maintenance database."""
    if base.database_url is None:
        from infra.postgres_local import LocalPostgres

        return LocalPostgres(base).admin_url("postgres")
    admin = base.admin_database_url or base.database_url
    return with_db(admin.get_secret_value(), "postgres")


def create(base: Settings, admin_url: str, label: str, **overrides: object) -> Settings:
    """Settings for a new sandbox named ``<label>_<random>``: topics and schema ready."""
    run = uuid.uuid4().hex[:10]
    dbname = f"casegate_{label}_{run}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    update: dict[str, object] = {"topic_prefix": f"{label[0]}{run}.", "db_name": dbname}
    if base.database_url is not None:
        update["database_url"] = with_db(base.database_url.get_secret_value(), dbname)
        update["admin_database_url"] = with_db(admin_url, dbname)
    settings = base.model_copy(update={**update, **overrides})
    ensure_topics(settings)
    ensure_acls(settings)
    migrate(database_urls(settings))
    return settings


def destroy(base: Settings, admin_url: str, sandboxes: list[Settings]) -> None:
    """Drop the sandboxes' databases, delete their topics (processors' changelogs too) and
    the local state copies their processors left."""
    for s in sandboxes:
        for leftover in (s.home / "state").glob(f"{s.topic_prefix}*"):
            leftover.unlink(missing_ok=True)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for s in sandboxes:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(s.db_name))
            )
    prefixes = tuple(s.topic_prefix for s in sandboxes)
    delete_acls(base, prefixes)
    admin = AdminClient(common_config(base))
    doomed = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()


def child_env(settings: Settings) -> dict[str, str]:
    """The environment a child process (a processor, a projection) needs to see ``settings``.

    Children read their settings from the environment in their own ``main()``, so a
    sandbox reaches them only through these variables; everything else is inherited.
    """
    env = dict(os.environ)
    env["CASEGATE_TOPIC_PREFIX"] = settings.topic_prefix
    env["CASEGATE_DB_NAME"] = settings.db_name
    env["CASEGATE_PARTITIONS"] = str(settings.partitions)
    if settings.local_kafka:
        # The local broker stays "local" in the child: it authenticates with the local
        # credentials of its own principal (infra.kafka_auth), not as an external broker.
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        env.pop("CASEGATE_KAFKA_BOOTSTRAP_SERVERS", None)
        env["CASEGATE_KAFKA_PORT"] = str(settings.kafka_port)
    else:
        env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["CASEGATE_APPROVAL_TICK_S"] = str(settings.approval_tick_s)
    env["CASEGATE_REVIEW_WAIT_S"] = str(settings.review_wait_s)
    env["CASEGATE_ROLLOUT_INTERVAL_S"] = str(settings.rollout_interval_s)
    env["CASEGATE_RECOMMEND_REFIT_AFTER_S"] = str(settings.recommend_refit_after_s)
    env["CASEGATE_STATE_RETENTION_S"] = str(settings.state_retention_s)
    env["CASEGATE_TXN_HOLD_MS"] = str(settings.txn_hold_ms)
    env["CASEGATE_BATCH_WAIT_MS"] = str(settings.batch_wait_ms)
    env["CASEGATE_METRICS_PORT"] = str(settings.metrics_port)
    env["CASEGATE_TRACING"] = settings.tracing
    env["CASEGATE_LOG_FORMAT"] = settings.log_format
    # One deployment, one key: derived ids and anchors must agree across its processes.
    env["CASEGATE_HOME"] = str(settings.home)
    env["CASEGATE_AUDIT_ANCHOR_INTERVAL_S"] = str(settings.audit_anchor_interval_s)
    if settings.event_id_key is not None:
        env["CASEGATE_EVENT_ID_KEY"] = settings.event_id_key.get_secret_value()
    if settings.data_master_key is not None:
        env["CASEGATE_DATA_MASTER_KEY"] = settings.data_master_key.get_secret_value()
    env["CASEGATE_CUSTOMER_CLEAR_FIELDS"] = ",".join(settings.customer_clear_fields)
    env["CASEGATE_DATA_KEY_CACHE_S"] = str(settings.data_key_cache_s)
    if settings.database_url is not None:
        env["DATABASE_URL"] = settings.database_url.get_secret_value()
    if settings.admin_database_url is not None:
        env["CASEGATE_ADMIN_DATABASE_URL"] = settings.admin_database_url.get_secret_value()
    return env
