"""Bringing the stack to a usable state: broker, database, topics, migrations."""

from __future__ import annotations

from collections.abc import Callable

from infra.acl import ensure_acls
from infra.db import check_app_role, database_urls, migrate
from infra.secrets import event_id_key
from infra.settings import Settings
from infra.topics import ensure_topics

Report = Callable[[str], None]


def services_up(settings: Settings, report: Report) -> None:
    """Start the local broker and database unless the environment names real ones."""
    if settings.local_kafka:
        from infra.kafka_local import LocalKafka

        report(LocalKafka(settings).up())
    else:
        report(f"Kafka: using {settings.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)")
    if settings.local_postgres:
        from infra.postgres_local import LocalPostgres

        report(LocalPostgres(settings).up())
    else:
        report("PostgreSQL: using DATABASE_URL")


def services_down(settings: Settings, report: Report) -> None:
    if settings.local_kafka:
        from infra.kafka_local import LocalKafka

        report(LocalKafka(settings).down())
    if settings.local_postgres:
        from infra.postgres_local import LocalPostgres

        report(LocalPostgres(settings).down())


def provision(settings: Settings, report: Report) -> None:
    """Topics, schema migrations and the deployment's event-id key; idempotent."""
    created = [t.name for t in ensure_topics(settings) if t.created]
    report(
        f"Topics: {len(created)} created"
        + (f" ({', '.join(created)})" if created else ", all present")
    )
    if bindings := ensure_acls(settings):
        report(f"ACLs: {bindings} for the components' principals on {settings.topic_prefix}*")
    urls = database_urls(settings)
    applied = migrate(urls)
    check_app_role(urls.app)
    report(
        f"Migrations: {len(applied)} applied"
        + (f" ({', '.join(applied)})" if applied else ", schema up to date")
    )
    # Generated here (0600) unless CASEGATE_EVENT_ID_KEY is set, so that every component
    # started afterwards reads the same one.
    event_id_key(settings)
