"""Building a faust app for one processor from the settings (no I/O until it runs)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from infra.kafka import common_config
from infra.settings import Settings
from processors import transport

log = logging.getLogger(__name__)


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
    data = settings.home / "faust"
    data.mkdir(parents=True, exist_ok=True)  # faust creates only the last level itself
    app = faust.App(
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
        # As the projections' consumers (infra.kafka): a worker that died without leaving
        # the group holds its partitions for 10 s, not faust's default of 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        web_enabled=False,
        # faust keeps a small data folder per app (its default is the working directory,
        # where every test sandbox would leave one).
        datadir=str(data / "{conf.name}-data"),
    )
    # Idempotent acks=all producer, read-committed consumer, and offsets committed only
    # past records an agent was handed: see processors/transport.py.
    transport.install(app)
    return app


def raw_topic(app: faust.App, settings: Settings, *names: str) -> faust.TopicT:
    """Casegate topics read and written as raw bytes: the Avro codec does the rest.

    Several names make one subscription; they must be co-partitioned (same partition
    count, keyed by case_id), so partition p of each lands on the same worker.
    """
    return app.topic(
        *(settings.topic(name) for name in names), key_serializer="raw", value_serializer="raw"
    )


async def start_follower(settings: Settings, what: str) -> AIOKafkaConsumer:
    """A started read-committed consumer outside any group, for a task that follows a whole
    topic (policies, the recommender's history). A broker that is away when the task
    starts (a restart) is waited out: the failed start would otherwise crash the worker."""
    wait = 0.5
    while True:
        consumer = AIOKafkaConsumer(
            **aiokafka_config(settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
        except KafkaConnectionError as exc:
            await consumer.stop()
            log.warning("%s: broker unreachable (%s); trying again in %.1fs", what, exc, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 10.0)
            continue
        return consumer


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Connection settings for a plain aiokafka client next to the faust app."""
    conf: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.endswith("SSL"):
        conf["ssl_context"] = create_ssl_context()
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password
        conf["sasl_mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl_plain_username"] = settings.kafka_sasl_username or ""
        conf["sasl_plain_password"] = password.get_secret_value() if password else ""
    return conf


def ensure_changelogs(settings: Settings, app: faust.App, timeout_s: float = 30.0) -> None:
    """Create the app's table changelog topics (compacted, co-partitioned) before it starts.

    faust would create them itself, but a worker whose metadata does not list a topic
    it has just created sees it with 0 partitions and crashes (PartitionsMismatch).
    """
    admin = AdminClient(common_config(settings))
    names = [table.changelog_topic.get_topic_name() for table in app.tables.values()]
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = [
        NewTopic(
            name,
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config={
                "cleanup.policy": "compact",
                "min.insync.replicas": str(settings.min_insync_replicas),
            },
        )
        for name in names
        if name not in existing
    ]
    for future in (admin.create_topics(wanted) if wanted else {}).values():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another worker won
                raise
    deadline = time.monotonic() + timeout_s
    while any(
        len(getattr(admin.list_topics(timeout=timeout_s).topics.get(n), "partitions", {}))
        != settings.partitions
        for n in names
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"changelog topics {names} not ready within {timeout_s:g}s")
        time.sleep(0.2)
