"""A hostile client against the broker itself, black-box: each principal connects with its
own SCRAM credentials to the real local broker (StandardAuthorizer) and tries what it
must not. Issue 14, scenario 5: an upstream service forging a review, an execution or a
policy is refused by the broker (TOPIC_AUTHORIZATION_FAILED), and so is a client that
does not authenticate.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from pydantic import SecretStr

from infra.acl import PRINCIPALS
from infra.kafka import common_config, consumer_config, producer_config
from infra.kafka_auth import as_principal
from infra.settings import Settings
from infra.topics import TOPICS

ALL_TOPICS = tuple(t.name for t in TOPICS)
DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED


def write_each(settings: Settings, principal: str, topics: tuple[str, ...]) -> dict[str, int]:
    """Produce one record to each topic as `principal`; the broker's answer per topic
    (KafkaError.NO_ERROR when it took the record)."""
    producer = Producer(producer_config(as_principal(settings, principal), log_level=0))
    answers: dict[str, int] = {}

    def report(topic: str, err: KafkaError | None) -> None:
        answers[topic] = KafkaError.NO_ERROR if err is None else err.code()

    for topic in topics:
        producer.produce(
            settings.topic(topic),
            key=b"hostile",
            value=b"not an event",
            on_delivery=lambda err, _msg, topic=topic: report(topic, err),
        )
    assert producer.flush(30) == 0
    return answers


def first_answer(settings: Settings, principal: str, group: str, topic: str) -> KafkaError | str:
    """What consuming `topic` as `principal` in `group` (from the beginning) yields first:
    the record's key, or the error the broker answered with."""
    consumer = Consumer(
        consumer_config(as_principal(settings, principal), settings.topic_prefix + group)
    )
    try:
        consumer.subscribe([settings.topic(topic)])
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                return msg.error()  # type: ignore[no-any-return]
            return (msg.key() or b"").decode()
        raise AssertionError(f"no answer reading {topic} as {principal}")
    finally:
        consumer.close()


# The table itself is held to the minimal rights in tests/unit/test_kafka_security.py;
# here the broker is held to the table.
@pytest.mark.parametrize("principal", sorted(PRINCIPALS))
def test_a_principal_writes_its_own_topics_and_is_refused_every_other(
    settings: Settings, principal: str
) -> None:
    allowed = set(PRINCIPALS[principal].writes)
    # Given the principal's credentials; when it writes to every casegate topic
    answers = write_each(settings, principal, ALL_TOPICS)
    # then the broker takes exactly its own topics and refuses the rest
    assert {t for t, code in answers.items() if code == KafkaError.NO_ERROR} == allowed
    assert {t: code for t, code in answers.items() if t not in allowed} == {
        t: DENIED for t in ALL_TOPICS if t not in allowed
    }


def test_upstream_cannot_forge_reviews_executions_or_policy(settings: Settings) -> None:
    answers = write_each(settings, "upstream", ("reviews", "executions", "policy", "upstream"))
    assert answers == {
        "reviews": DENIED,
        "executions": DENIED,
        "policy": DENIED,
        "upstream": KafkaError.NO_ERROR,
    }


@pytest.mark.parametrize(
    "override",
    [
        {"kafka_security_protocol": "PLAINTEXT"},
        {
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_username": "upstream",
            "kafka_sasl_password": SecretStr("guessed"),
        },
        {
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_username": "nobody",
            "kafka_sasl_password": SecretStr("guessed"),
        },
    ],
    ids=["plaintext", "wrong-password", "unknown-user"],
)
def test_a_client_that_does_not_authenticate_cannot_connect_or_read(
    settings: Settings, override: dict[str, object]
) -> None:
    stranger = settings.model_copy(update=override)
    conf = {**common_config(stranger), "log_level": 0, "socket.connection.setup.timeout.ms": 2000}
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=5)
    consumer = Consumer(
        {**consumer_config(stranger, f"{settings.topic_prefix}stranger"), "log_level": 0}
    )
    try:
        consumer.assign([TP(settings.topic("cases"), 0, OFFSET_BEGINNING)])
        got = [consumer.poll(0.5) for _ in range(6)]
        assert all(m is None or m.error() is not None for m in got)
    finally:
        consumer.close()


def test_read_rights_are_per_topic_and_per_group(settings: Settings) -> None:
    # Given a record on `recommendations` (written by the harness, admin)
    producer = Producer(producer_config(settings))
    producer.produce(settings.topic("recommendations"), key=b"readable", value=b"x", partition=0)
    assert producer.flush(30) == 0
    # the guard reads its input in its own group
    assert first_answer(settings, "guard", "guard", "recommendations") == "readable"
    # but not with another processor's group, nor a topic it does not consume
    wrong_group = first_answer(settings, "guard", "approve", "recommendations")
    assert isinstance(wrong_group, KafkaError)
    assert wrong_group.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    not_its_input = first_answer(settings, "guard", "guard", "reviews")
    assert isinstance(not_its_input, KafkaError) and not_its_input.code() == DENIED
    # and an upstream service reads nothing, not even `cases`
    upstream = first_answer(settings, "upstream", "upstream", "cases")
    assert isinstance(upstream, KafkaError)
    assert upstream.code() in (DENIED, KafkaError.GROUP_AUTHORIZATION_FAILED)


def test_a_component_cannot_grant_itself_rights_or_create_topics(settings: Settings) -> None:
    admin = AdminClient(common_config(as_principal(settings, "upstream")))
    grant = AclBinding(
        ResourceType.TOPIC,
        settings.topic("reviews"),
        ResourcePatternType.LITERAL,
        "User:upstream",
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    with pytest.raises(KafkaException) as refused:
        for future in admin.create_acls([grant], request_timeout=15).values():
            future.result()
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    topic = f"{settings.topic_prefix}smuggled-{uuid.uuid4().hex[:6]}"
    with pytest.raises(KafkaException) as not_created:
        for future in admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=15).values():
            future.result()
    assert not_created.value.args[0].code() == DENIED


def test_every_component_of_the_table_has_credentials(settings: Settings) -> None:
    """The table and the broker agree: each principal authenticates and sees its topics."""
    for principal, rights in PRINCIPALS.items():
        admin = AdminClient(common_config(as_principal(settings, principal)))
        visible = set(admin.list_topics(timeout=15).topics)
        mine = {settings.topic(t) for t in (*rights.reads, *rights.writes)}
        assert mine <= visible, principal
        assert visible & {settings.topic(t) for t in ALL_TOPICS} == mine, principal
