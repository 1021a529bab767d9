"""Who may do what on the broker: one table of principals and their rights, the ACLs of
each topic prefix derived from it.

Every component connects as its own principal and gets only what it reads and writes
(architecture §3): upstream services write the intake topic and nothing else; only the
console writes `reviews`; only the policy publisher and the rollout processor write
`policy`; each processor writes its own outputs, its state changelogs and the dead
letters. `admin` (setup, the test harness) is the broker's only super user and needs no
ACL.

Names here are relative to the topic prefix; `bindings(prefix)` makes them absolute, so
every sandbox (its own prefix) gets its own ACLs, created with its topics. A group or
transactional-id name ending in "-" or "." is a prefix (PREFIXED pattern: processor
instances, throwaway readers with a random suffix); any other name is LITERAL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from infra.kafka import common_config
from infra.kafka_auth import ADMIN
from infra.settings import Settings


@dataclass(frozen=True)
class Rights:
    """What one principal may touch, by name relative to the topic prefix."""

    reads: tuple[str, ...] = ()  # logical topics consumed
    writes: tuple[str, ...] = ()  # logical topics produced to
    groups: tuple[str, ...] = ()  # consumer groups (offsets committed, or readers)
    transactions: tuple[str, ...] = ()  # transactional ids
    owns: tuple[str, ...] = ()  # topic-name prefixes it creates and uses (state changelogs)


def _processor(
    name: str,
    reads: tuple[str, ...],
    writes: tuple[str, ...],
    stores: bool = True,
    policy: bool = True,
    followers: tuple[str, ...] = (),
) -> Rights:
    """A processor on `processors.loop`: its group and transactional ids, dead letters,
    the policy (`Handler.needs_policy`), and (with stores) its changelogs and their
    restore reader."""
    return Rights(
        reads=(*reads, "policy") if policy else reads,
        writes=(*writes, "deadletter"),
        groups=(
            name,
            *(("policy-follower-",) if policy else ()),
            *(f"{f}-follower-" for f in followers),
            *(("restore",) if stores else ()),
        ),
        transactions=(f"{name}-",),
        owns=(f"{name}-",) if stores else (),
    )


PUBLISHER = "publisher"  # `casegate policy publish`

# What each component reads and writes (processors' `inputs`, the topics of the events
# they emit; tests/unit/test_kafka_security.py holds them to the handlers).
PRINCIPALS: dict[str, Rights] = {
    # `casegate produce` and the demo: case events into intake. Transactional (produce).
    "upstream": Rights(writes=("upstream",), transactions=("produce-",)),
    "intake": _processor("intake", reads=("upstream",), writes=("cases",), policy=False),
    "recommend": _processor(
        "recommend",
        reads=("cases", "reviews"),
        writes=("recommendations",),
        followers=("history",),
    ),
    "guard": _processor("guard", reads=("recommendations",), writes=("decisions",)),
    "approve": _processor(
        "approve", reads=("decisions", "reviews", "cases"), writes=("decisions", "executions")
    ),
    "execute": _processor("execute", reads=("executions",), writes=("executions",), stores=False),
    # Proposals, promotions and demotions, each with the policy version it publishes (in
    # the same transaction): the one processor that writes `policy`.
    "rollout": _processor("rollout", reads=("phase-requests",), writes=("rollout", "policy")),
    "readmodels": Rights(
        reads=(
            "cases",
            "recommendations",
            "decisions",
            "reviews",
            "executions",
            "policy",
            "deadletter",
            "phase-requests",
            "rollout",
            "erasures",
            "governance",
        ),
        # The audit chains' signed heads (projections.anchors).
        writes=("deadletter", "audit-anchors"),
        groups=("projection.",),
    ),
    # Reviews and reclassifications, signed by the operator the console authenticated;
    # supervisors' rollout approvals and kill switches (the console, `casegate rollout`).
    # The policy page dry-runs a candidate over `recommendations` (assigned partitions, a
    # throwaway group that commits nothing). Its publish connects as the publisher: the
    # console itself never writes `policy`.
    "console": Rights(
        reads=("recommendations",), writes=("reviews", "phase-requests"), groups=("dry-run-",)
    ),
    # `casegate policy publish`: reads the versions published so far, writes the next.
    PUBLISHER: Rights(reads=("policy",), writes=("policy",), groups=("policy-cli-",)),
}
NAMES: tuple[str, ...] = (ADMIN, *PRINCIPALS)


def _pattern(name: str) -> ResourcePatternType:
    prefixed = name.endswith(("-", "."))
    return ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL


def bindings(prefix: str) -> list[AclBinding]:
    """Every ALLOW binding of the table for topics, groups and transactions under `prefix`."""
    out: list[AclBinding] = []

    def allow(
        rtype: ResourceType, name: str, pattern: ResourcePatternType, who: str, op: AclOperation
    ) -> None:
        out.append(
            AclBinding(rtype, name, pattern, f"User:{who}", "*", op, AclPermissionType.ALLOW)
        )

    literal = ResourcePatternType.LITERAL
    for who, rights in PRINCIPALS.items():
        # READ and WRITE each imply DESCRIBE (metadata, offsets) on the same resource.
        for topic in rights.reads:
            allow(ResourceType.TOPIC, prefix + topic, literal, who, AclOperation.READ)
        for topic in rights.writes:
            allow(ResourceType.TOPIC, prefix + topic, literal, who, AclOperation.WRITE)
        for owned in rights.owns:
            for op in (AclOperation.CREATE, AclOperation.READ, AclOperation.WRITE):
                allow(ResourceType.TOPIC, prefix + owned, _pattern(owned), who, op)
        for group in rights.groups:
            allow(ResourceType.GROUP, prefix + group, _pattern(group), who, AclOperation.READ)
        for txn in rights.transactions:
            allow(
                ResourceType.TRANSACTIONAL_ID, prefix + txn, _pattern(txn), who, AclOperation.WRITE
            )
    return out


def manages_acls(settings: Settings) -> bool:
    """ACLs are casegate's to create on its local broker; elsewhere only when asked."""
    if settings.kafka_acls is not None:
        return settings.kafka_acls
    return settings.local_kafka


def _exactly(b: AclBinding) -> AclBindingFilter:
    """The filter that matches binding `b` and no other."""
    return AclBindingFilter(
        b.restype,
        b.name,
        b.resource_pattern_type,
        b.principal,
        b.host,
        b.operation,
        b.permission_type,
    )


def _wait(futures: Iterable[Future[object]]) -> None:
    for future in futures:
        future.result(timeout=30)


def ensure_acls(settings: Settings, timeout_s: float = 30.0) -> int:
    """Create the ACLs of `settings.topic_prefix` (idempotent: the broker keeps one copy
    of a binding); how many bindings there are, 0 when ACLs are not casegate's to manage."""
    if not manages_acls(settings):
        return 0
    wanted = bindings(settings.topic_prefix)
    admin = AdminClient(common_config(settings))
    _wait(admin.create_acls(wanted, request_timeout=30).values())
    # The controller has them; the broker's authorizer takes them in when it replays the
    # metadata, a moment later (seconds on a loaded machine). Wait for that, so a client
    # started next is not refused. One batch is applied at once: its last binding will do.
    probe = _exactly(wanted[-1])
    deadline = time.monotonic() + timeout_s
    while not admin.describe_acls(probe, request_timeout=timeout_s).result():
        if time.monotonic() > deadline:
            raise RuntimeError(f"ACLs of {settings.topic_prefix} not in force in {timeout_s:g}s")
        time.sleep(0.1)
    return len(wanted)


def delete_acls(settings: Settings, prefixes: Iterable[str]) -> None:
    """Remove the ACLs of sandboxes whose topics are being deleted."""
    if not manages_acls(settings):
        return
    filters = [_exactly(b) for prefix in prefixes for b in bindings(prefix)]
    if filters:
        admin = AdminClient(common_config(settings))
        _wait(admin.delete_acls(filters, request_timeout=30).values())
