"""Building a faust app for one processor from the settings (no I/O until it runs)."""

from __future__ import annotations

import faust

from infra.settings import Settings


def faust_broker(settings: Settings) -> str:
    return ";".join(f"kafka://{host}" for host in settings.bootstrap_servers.split(","))


def create_app(settings: Settings, component: str) -> faust.App:
    """One faust app per processor: its own consumer group and changelog topics."""
    credentials = None
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password.get_secret_value() if password else "",
            mechanism=settings.kafka_sasl_mechanism,
        )
    return faust.App(
        f"{settings.topic_prefix}{component}",
        broker=faust_broker(settings),
        broker_credentials=credentials,
        # Tables are rebuilt from their changelog topics; no local RocksDB needed.
        store="memory://",
        # Tables' changelogs must match the source topics' partitions (co-partitioning).
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )


def raw_topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    """A casegate topic read and written as raw bytes: the Avro codec does the rest."""
    return app.topic(settings.topic(name), key_serializer="raw", value_serializer="raw")
