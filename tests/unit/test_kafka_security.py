"""The broker's rights table, how each client authenticates, and the local broker's
security settings: pure logic, no broker."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import certifi
import pytest
from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
from pydantic import SecretStr

from infra.acl import ADMIN, NAMES, PRINCIPALS, bindings
from infra.kafka import aiokafka_config, common_config
from infra.kafka_auth import as_principal, secrets_file
from infra.kafka_local import LocalKafka
from infra.sandbox import child_env
from infra.secrets import write_private
from infra.settings import Settings
from infra.setup_errors import SetupError
from infra.topics import PROJECTED, TOPICS
from processors.approve import Approve
from processors.execute import Execute
from processors.guard import Guard
from processors.handler import Handler
from processors.intake import Intake
from processors.recommend.processor import Recommend
from processors.rollout import Rollout

HANDLERS: tuple[type[Handler], ...] = (Intake, Recommend, Guard, Approve, Execute, Rollout)


def writers_of(topic: str) -> set[str]:
    return {who for who, rights in PRINCIPALS.items() if topic in rights.writes}


def test_only_the_console_writes_reviews_and_only_the_publisher_writes_policy() -> None:
    assert writers_of("reviews") == {"console"}
    # The rollout processor publishes the phase changes supervisors approved or a demotion
    # trigger fired, and nobody else but the publisher may.
    assert writers_of("policy") == {"publisher", "rollout"}
    assert writers_of("phase-requests") == {"console"}
    assert writers_of("rollout") == {"rollout"}
    assert writers_of("upstream") == {"upstream"}
    assert writers_of("cases") == {"intake"}
    assert writers_of("audit-anchors") == {"readmodels"}


def test_no_owned_prefix_covers_a_casegate_topic() -> None:
    # A processor creates and writes every topic under its changelog prefix: a topic named
    # under it (say `rollout-requests` under the rollout's `rollout-`) would be its to forge.
    for who, rights in PRINCIPALS.items():
        for owned in rights.owns:
            assert [t.name for t in TOPICS if t.name.startswith(owned)] == [], who


def test_upstream_writes_the_intake_topic_and_reads_nothing() -> None:
    upstream = PRINCIPALS["upstream"]
    assert upstream.writes == ("upstream",)
    assert upstream.reads == () and upstream.groups == () and upstream.owns == ()


@pytest.mark.parametrize(
    ("principal", "writes"),
    [
        ("intake", {"cases", "deadletter"}),
        ("recommend", {"recommendations", "deadletter"}),
        ("guard", {"decisions", "deadletter"}),
        ("approve", {"decisions", "executions", "deadletter"}),
        ("execute", {"executions", "deadletter"}),
        ("readmodels", {"deadletter", "audit-anchors"}),
        ("console", {"reviews", "phase-requests"}),
        ("rollout", {"rollout", "policy", "deadletter"}),
    ],
)
def test_each_component_writes_its_outputs_only(principal: str, writes: set[str]) -> None:
    assert set(PRINCIPALS[principal].writes) == writes


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda h: h.component)
def test_a_processor_reads_its_inputs_and_the_policy_and_nothing_more(
    handler: type[Handler],
) -> None:
    rights = PRINCIPALS[handler.component]
    followed = {"cases", "reviews"} if handler is Recommend else set()  # its history
    expected = set(handler.inputs) | followed | ({"policy"} if handler.needs_policy else set())
    assert set(rights.reads) == expected
    # its own group and transactional ids; changelogs only with state
    assert handler.component in rights.groups
    assert rights.transactions == (f"{handler.component}-",)
    assert rights.owns == ((f"{handler.component}-",) if handler.stores else ())


def test_the_read_models_read_every_projected_topic() -> None:
    assert set(PRINCIPALS["readmodels"].reads) == {t.name for t in PROJECTED}


def test_every_principal_is_named_and_admin_has_no_acl() -> None:
    assert set(NAMES) == {ADMIN, *PRINCIPALS}
    assert all(not b.principal.endswith(f":{ADMIN}") for b in bindings("p."))


def test_bindings_stay_under_the_prefix_and_grant_no_wildcard() -> None:
    # Given a sandbox's prefix, when its ACLs are derived
    made = bindings("t42.")
    # then every one names a resource under that prefix, allows one specific operation,
    # and none touches the cluster or uses a wildcard
    assert made
    assert all(b.name.startswith("t42.") for b in made)
    assert all(b.permission_type == AclPermissionType.ALLOW for b in made)
    assert all(b.operation not in (AclOperation.ALL, AclOperation.ANY) for b in made)
    assert all(b.restype != ResourceType.BROKER for b in made)
    assert all(b.name != "*" for b in made)
    topics = {t.name for t in TOPICS}
    for b in made:
        relative = b.name.removeprefix("t42.")
        if b.restype == ResourceType.TOPIC and relative in topics:
            # casegate's topics by exact name: `t42.cases` never grants `t42.casesX`
            assert b.resource_pattern_type == ResourcePatternType.LITERAL
    # changelogs: the processor's own name prefix, never another's topic
    guard = {
        (b.name, b.resource_pattern_type, b.operation)
        for b in made
        if b.principal == "User:guard" and b.restype == ResourceType.TOPIC
    }
    assert ("t42.guard-", ResourcePatternType.PREFIXED, AclOperation.CREATE) in guard
    assert not any(name.startswith("t42.approve-") for name, _, _ in guard)


def local(tmp_path: Path, **update: object) -> Settings:
    base = Settings(home=tmp_path, kafka_port=19999, kafka_bootstrap_servers=None)
    return base.model_copy(update=update)


def test_a_component_on_the_local_broker_uses_its_own_generated_password(
    tmp_path: Path,
) -> None:
    settings = local(tmp_path)
    write_private(secrets_file(settings), json.dumps({"admin": "a-pw", "guard": "g-pw"}))
    guard = common_config(as_principal(settings, "guard"))
    assert guard["security.protocol"] == "SASL_PLAINTEXT"
    assert guard["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (guard["sasl.username"], guard["sasl.password"]) == ("guard", "g-pw")
    # no component named: the harness and setup, as admin
    assert common_config(settings)["sasl.username"] == "admin"
    # a child process sees the same local broker, and uses its own principal there
    env = child_env(settings)
    assert "KAFKA_BOOTSTRAP_SERVERS" not in env and env["CASEGATE_KAFKA_PORT"] == "19999"


def test_without_generated_passwords_the_error_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SetupError) as missing:
        common_config(as_principal(local(tmp_path), "execute"))
    assert "casegate up" in missing.value.hint


def test_an_unknown_principal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown Kafka principal"):
        as_principal(local(tmp_path), "root")


def test_credentials_in_the_environment_win_and_sasl_ssl_keeps_tls() -> None:
    settings = Settings(
        kafka_bootstrap_servers="kafka.example:9094",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="casegate-guard",
        kafka_sasl_password=SecretStr("s3cret"),
        kafka_ssl_ca_location=Path(certifi.where()),
    )
    conf = common_config(as_principal(settings, "guard"))
    assert conf == {
        "bootstrap.servers": "kafka.example:9094",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "casegate-guard",
        "sasl.password": "s3cret",
        "ssl.ca.location": certifi.where(),
    }
    probe = aiokafka_config(settings)
    assert probe["security_protocol"] == "SASL_SSL"
    assert probe["ssl_context"].cert_store_stats()["x509_ca"] > 0  # the CA file named
    assert (probe["sasl_plain_username"], probe["sasl_plain_password"]) == (
        "casegate-guard",
        "s3cret",
    )


def test_a_username_without_a_protocol_never_goes_out_in_clear() -> None:
    settings = Settings(
        kafka_bootstrap_servers="kafka.example:9094",
        kafka_sasl_username="u",
        kafka_sasl_password=SecretStr("p"),
    )
    assert common_config(settings)["security.protocol"] == "SASL_SSL"


def test_mutual_tls_passes_the_client_certificate() -> None:
    settings = Settings(
        kafka_bootstrap_servers="kafka.example:9093",
        kafka_security_protocol="SSL",
        kafka_ssl_certificate_location=Path("/c.pem"),
        kafka_ssl_key_location=Path("/k.pem"),
        kafka_ssl_key_password=SecretStr("kp"),
    )
    conf = common_config(settings)
    assert conf["security.protocol"] == "SSL"
    assert (conf["ssl.certificate.location"], conf["ssl.key.location"]) == ("/c.pem", "/k.pem")
    assert conf["ssl.key.password"] == "kp"
    assert "sasl.username" not in conf


def test_an_external_broker_with_nothing_configured_is_plaintext() -> None:
    conf = common_config(Settings(kafka_bootstrap_servers="kafka.example:9092"))
    assert conf["security.protocol"] == "PLAINTEXT"
    assert "sasl.password" not in conf


def test_a_private_file_is_0600_from_the_start_even_over_a_wider_one(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "x.json"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no staging file left behind


def test_the_local_broker_authenticates_and_authorizes(tmp_path: Path) -> None:
    kafka = LocalKafka(local(tmp_path))
    passwords = kafka.ensure_passwords()
    assert set(passwords) == set(NAMES) and len(set(passwords.values())) == len(NAMES)
    assert stat.S_IMODE(secrets_file(kafka.settings).stat().st_mode) == 0o600
    assert kafka.ensure_passwords() == passwords  # generated once, kept
    kafka._write_config(passwords[ADMIN])
    props = dict(line.split("=", 1) for line in kafka.config_file.read_text().splitlines() if line)
    assert stat.S_IMODE(kafka.config_file.stat().st_mode) == 0o600
    assert "PLAINTEXT:PLAINTEXT" not in props["listener.security.protocol.map"]
    assert props["listener.security.protocol.map"] == (
        "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == "User:admin"
    assert props["allow.everyone.if.no.acl.found"] == "false"


def test_data_formatted_without_authentication_is_discarded(tmp_path: Path) -> None:
    # Given a data folder an older, PLAINTEXT, casegate formatted (no security marker)
    kafka = LocalKafka(local(tmp_path))
    passwords = kafka.ensure_passwords()
    kafka.data.mkdir(parents=True)
    (kafka.data / "meta.properties").write_text("cluster.id=old\n")
    assert kafka._formatted() and not kafka._secured(passwords)
    # a marker of another admin password (secrets regenerated) is no better
    write_private(kafka.security_marker, "sasl-scram-sha-512+standard-authorizer/1\nx\n")
    assert not kafka._secured(passwords)
    # when it is discarded, nothing of it is left to start the broker on
    kafka._discard_insecure_data()
    assert not kafka.data.exists()
