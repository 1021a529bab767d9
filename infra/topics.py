"""The topics of architecture §3, created explicitly and idempotently.

Explicit creation matters: processors that read two topics side by side (approve reads
`decisions` and `reviews`) and keep state per partition need both topics, and their
state changelogs, to have the same partition count; an auto-created topic would not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from infra.kafka import common_config
from infra.settings import Settings
from schemas.events import Event

# Topics are the system of record (event sourcing), so nothing is deleted by age.
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


@dataclass(frozen=True)
class TopicSpec:
    name: str  # logical name; the full name adds the configured prefix
    configs: dict[str, str] = field(default_factory=dict)
    single_partition: bool = False
    # Projected into the read models. The intake topic is not: only what intake accepted
    # (re-published on `cases`) is part of the record; what it refused is dead-lettered.
    projected: bool = True
    # Carries casegate events (Avro). The audit anchors are signed JSON instead.
    events: bool = True


TOPICS: tuple[TopicSpec, ...] = (
    # Upstream services write here; intake validates and re-publishes to `cases`.
    TopicSpec("upstream", KEEP_FOREVER, projected=False),
    TopicSpec("cases", KEEP_FOREVER),
    TopicSpec("recommendations", KEEP_FOREVER),
    TopicSpec("decisions", KEEP_FOREVER),
    TopicSpec("reviews", KEEP_FOREVER),
    TopicSpec("executions", KEEP_FOREVER),
    # Every version ever published, keyed by version and kept forever: the in-force one is
    # the newest version first published, and a re-published version must stay visible as
    # a re-publication (compaction would move it, or erase the first, and readers that
    # started later would disagree with those that saw the original).
    TopicSpec("policy", KEEP_FOREVER, single_partition=True),
    TopicSpec("deadletter", KEEP_FOREVER),
    # Supervisors' approvals and kill switches (console, CLI), then the rollout processor's
    # proposals, promotions, demotions and refusals: one partition each, so a workflow's
    # rollout story has one order and one rollout worker owns it.
    TopicSpec("phase-requests", KEEP_FOREVER, single_partition=True),
    TopicSpec("rollout", KEEP_FOREVER, single_partition=True),
    # `casegate erase`: who destroyed which customer's data keys, when (into audit_log).
    TopicSpec("erasures", KEEP_FOREVER, single_partition=True),
    # Governance records that concern no case (access reviews), audited like the rest.
    TopicSpec("governance", KEEP_FOREVER, single_partition=True),
    # The audit chains' signed heads (projections.anchors): written by the read models,
    # read by `casegate audit verify`, never projected (it is the check on the projection).
    TopicSpec("audit-anchors", KEEP_FOREVER, single_partition=True, projected=False, events=False),
)
# What the read models consume (and a replay rebuilds from).
PROJECTED: tuple[TopicSpec, ...] = tuple(t for t in TOPICS if t.projected)


# A processor's state changelog: compacted so a restore reads each key's last value, with
# segments that roll often enough for compaction (and retention's tombstones) to bite.
CHANGELOG_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": str(15 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.25",
    "delete.retention.ms": str(24 * 3600 * 1000),
}


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str]
    created: bool


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(common_config(settings))


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[TopicState]:
    """Create missing topics; existing ones are left as they are and reported."""
    admin = _admin(settings)
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = []
    for spec in TOPICS:
        full = settings.topic(spec.name)
        if full in existing:
            continue
        configs = {"min.insync.replicas": str(settings.min_insync_replicas), **spec.configs}
        wanted.append(
            NewTopic(
                full,
                num_partitions=1 if spec.single_partition else settings.partitions,
                replication_factor=settings.replication_factor,
                config=configs,
            )
        )
    created = set()
    if wanted:
        for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
            try:
                future.result()
            except Exception as exc:
                # Another process may have created it a moment ago: that is success too.
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
            created.add(name)
    return describe_topics(settings, created=created, timeout_s=timeout_s)


def describe_topics(
    settings: Settings, created: set[str] | None = None, timeout_s: float = 30.0
) -> list[TopicState]:
    admin = _admin(settings)
    meta = admin.list_topics(timeout=timeout_s).topics
    deadline = time.monotonic() + timeout_s
    # Topics created a moment ago can be missing from the first metadata answer.
    while created and not created <= set(meta) and time.monotonic() < deadline:
        time.sleep(0.2)
        meta = admin.list_topics(timeout=timeout_s).topics
    names = [settings.topic(s.name) for s in TOPICS if settings.topic(s.name) in meta]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    configs: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources).items() if resources else ():
        entries = future.result(timeout=timeout_s)
        configs[resource.name] = {
            k: v.value for k, v in entries.items() if not v.is_default and v.value is not None
        }
    states = []
    for name in names:
        partitions = meta[name].partitions
        replication = len(next(iter(partitions.values())).replicas) if partitions else 0
        states.append(
            TopicState(
                name,
                len(partitions),
                replication,
                configs.get(name, {}),
                name in (created or set()),
            )
        )
    return states


def ensure_changelogs(settings: Settings, names: list[str], timeout_s: float = 30.0) -> None:
    """Create a processor's state changelog topics (compacted, partitioned like its input)
    unless they exist, and wait until the broker lists them with all their partitions."""
    admin = _admin(settings)
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = [
        NewTopic(
            name,
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config={"min.insync.replicas": str(settings.min_insync_replicas), **CHANGELOG_CONFIGS},
        )
        for name in names
        if name not in existing
    ]
    if wanted:
        for future in admin.create_topics(wanted, request_timeout=timeout_s).values():
            try:
                future.result()
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):  # another worker was first
                    raise
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(timeout=timeout_s).topics
        if all(n in meta and len(meta[n].partitions) == settings.partitions for n in names):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"changelog topics {names} not ready within {timeout_s:g}s")
        time.sleep(0.2)


# Upstream services write their case events here; intake re-publishes what it accepts on
# `cases`, the topic every other component reads.
INTAKE = "upstream"


def produced_to(event: Event) -> str:
    """The logical topic a client outside the pipeline writes `event` to: case events go
    through intake, every other event straight to its own topic."""
    return INTAKE if event.topic == "cases" else event.topic
