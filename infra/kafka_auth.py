"""Who a Kafka client is and how it connects: security protocol, SASL credentials, TLS files.

Explicit settings win (KAFKA_SASL_USERNAME / PASSWORD, KAFKA_SECURITY_PROTOCOL: an
external broker). With none, a client of the local broker authenticates with SCRAM as
its principal (`settings.kafka_principal`, admin when unset), whose generated password
`casegate up` keeps in <home>/secrets/kafka.json. Any other broker with nothing
configured is spoken to in PLAINTEXT, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.settings import Settings
from infra.setup_errors import SetupError

ADMIN = "admin"  # super user: formats the broker, creates topics and ACLs, runs the tests
LOCAL_MECHANISM = "SCRAM-SHA-512"
LOCAL_PROTOCOL = "SASL_PLAINTEXT"  # loopback only: the local broker listens on 127.0.0.1


@dataclass(frozen=True)
class KafkaAuth:
    protocol: str
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_location: Path | None = None
    certificate_location: Path | None = None
    key_location: Path | None = None
    key_password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def librdkafka(self) -> dict[str, Any]:
        """The confluent-kafka (librdkafka) properties."""
        conf: dict[str, Any] = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.mechanism
            conf["sasl.username"] = self.username or ""
            conf["sasl.password"] = self.password or ""
        if self.tls:
            optional = {
                "ssl.ca.location": self.ca_location,
                "ssl.certificate.location": self.certificate_location,
                "ssl.key.location": self.key_location,
                "ssl.key.password": self.key_password,
            }
            conf.update({k: str(v) for k, v in optional.items() if v is not None})
        return conf


def secrets_file(settings: Settings) -> Path:
    return settings.home / "secrets" / "kafka.json"


def local_passwords(settings: Settings) -> dict[str, str]:
    """Principal -> password of the local broker; empty before the first `casegate up`."""
    path = secrets_file(settings)
    if not path.exists():
        return {}
    passwords: dict[str, str] = json.loads(path.read_text())
    return passwords


def resolve(settings: Settings) -> KafkaAuth:
    """How this process's clients connect; see the module docstring."""
    tls = {
        "ca_location": settings.kafka_ssl_ca_location,
        "certificate_location": settings.kafka_ssl_certificate_location,
        "key_location": settings.kafka_ssl_key_location,
        "key_password": _secret(settings.kafka_ssl_key_password),
    }
    if settings.kafka_sasl_username is not None:
        return KafkaAuth(
            protocol=settings.kafka_security_protocol or "SASL_SSL",
            mechanism=settings.kafka_sasl_mechanism or LOCAL_MECHANISM,
            username=settings.kafka_sasl_username,
            password=_secret(settings.kafka_sasl_password),
            **tls,  # type: ignore[arg-type]
        )
    if settings.kafka_security_protocol is not None or not settings.local_kafka:
        return KafkaAuth(protocol=settings.kafka_security_protocol or "PLAINTEXT", **tls)  # type: ignore[arg-type]
    principal = settings.kafka_principal or ADMIN
    password = local_passwords(settings).get(principal)
    if password is None:
        raise SetupError(
            f"No Kafka credentials for principal {principal!r} in {secrets_file(settings)}.",
            "Run `casegate up` (it generates them), or set KAFKA_SASL_USERNAME and "
            "KAFKA_SASL_PASSWORD.",
        )
    return KafkaAuth(LOCAL_PROTOCOL, LOCAL_MECHANISM, principal, password)


def as_principal(settings: Settings, principal: str) -> Settings:
    """`settings` for a component that connects as `principal` (its own, on the local
    broker; credentials named in the environment still win)."""
    from infra.acl import NAMES  # infra.acl builds on this module's clients

    if principal not in NAMES:
        raise ValueError(f"unknown Kafka principal {principal!r}; known: {', '.join(NAMES)}")
    return settings.model_copy(update={"kafka_principal": principal})


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None
