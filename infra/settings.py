"""casegate's one settings object, read from the environment once per process (in main())."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _standard(name: str) -> AliasChoices:
    """Widely used variable names (KAFKA_*, DATABASE_URL) win; CASEGATE_-prefixed also work."""
    return AliasChoices(name, f"CASEGATE_{name}")


class Settings(BaseSettings):
    """Every knob casegate reads. Field docs are the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="CASEGATE_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka brokers to use; unset means the local broker started by `casegate up`.",
    )
    kafka_security_protocol: str | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_SECURITY_PROTOCOL"),
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; unset: SASL_PLAINTEXT with "
        "the local broker's generated credentials, PLAINTEXT for any other broker.",
    )
    kafka_sasl_mechanism: str | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_SASL_MECHANISM"),
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when SASL is used "
        "(SCRAM-SHA-512 when a username is given without one).",
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_SASL_USERNAME"),
        description="SASL user of this process; unset: the component's own principal from "
        "<home>/secrets/kafka.json (local broker).",
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_SASL_PASSWORD"),
        description="Password of KAFKA_SASL_USERNAME (kept secret, never printed).",
    )
    kafka_ssl_ca_location: Path | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_SSL_CA_LOCATION"),
        description="CA certificate(s) (PEM) that sign the broker's certificate, with SSL or "
        "SASL_SSL; unset: the system's trust store.",
    )
    kafka_ssl_certificate_location: Path | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_SSL_CERTIFICATE_LOCATION"),
        description="Client certificate (PEM) for mutual TLS.",
    )
    kafka_ssl_key_location: Path | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_SSL_KEY_LOCATION"),
        description="Private key (PEM) of the client certificate.",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None,
        validation_alias=_standard("KAFKA_SSL_KEY_PASSWORD"),
        description="Password of the client's private key, if it has one.",
    )
    kafka_principal: str | None = Field(
        default=None,
        description="Whose local-broker credentials this process uses (a component sets "
        "its own; unset: admin, for setup and the test harness). See README, security.",
    )
    kafka_acls: bool | None = Field(
        default=None,
        description="Create the components' ACLs when topics are ensured; unset: only on "
        "the local broker (an external broker's ACLs are its operator's).",
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=_standard("DATABASE_URL"),
        description="PostgreSQL URL the application uses; unset means the local server.",
    )
    admin_database_url: SecretStr | None = Field(
        default=None,
        description="URL used to apply migrations (needs DDL rights); defaults to DATABASE_URL.",
    )
    event_id_key: SecretStr | None = Field(
        default=None,
        description="Secret key of derived event ids and audit anchors (at least 16 "
        "characters; every process of a deployment needs the same). Unset: "
        "<home>/secrets/event_id_key, generated (0600) on first use.",
    )
    data_master_key: SecretStr | None = Field(
        default=None,
        description="Master key (64 hex characters: AES-256) that wraps the per-customer data "
        "keys in PostgreSQL; every process of a deployment needs the same. Unset: "
        "<home>/secrets/data_master_key, generated (0600) on first use.",
    )
    customer_clear_fields: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("tier",),
        description="Fields of a case's customer map that are not personal data and stay "
        "unsealed (comma-separated); every other customer field is sealed.",
    )
    data_key_cache_s: float = Field(
        default=60.0,
        ge=0,
        description="How long intake reuses a customer's data key before it looks it up "
        "again (after `casegate erase`, events sealed this long under the destroyed key "
        "are unreadable too).",
    )
    audit_anchor_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Fewest seconds between two anchors of the audit chain heads published "
        "by the read models (the tail `audit verify` can prove).",
    )
    topic_prefix: str = Field(default="casegate.", description="Prefix of every topic name.")
    partitions: int = Field(default=6, ge=1, description="Partitions of each topic created.")
    replication_factor: int = Field(default=1, ge=1, description="Replication of each topic.")
    min_insync_replicas: int = Field(default=1, ge=1, description="Topic min.insync.replicas.")
    home: Path = Field(
        default=PROJECT_ROOT / ".casegate",
        description="Project-local folder for the local broker, database, caches and logs.",
    )
    kafka_port: int = Field(default=9092, description="Port of the local broker (127.0.0.1).")
    kafka_controller_port: int = Field(default=9093, description="Local KRaft controller port.")
    kafka_heap: str = Field(default="768m", description="JVM heap of the local broker.")
    pg_port: int = Field(default=5433, description="Port of the local PostgreSQL (127.0.0.1).")
    db_name: str = Field(default="casegate", description="Database name on the local server.")
    llm_api_base: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint for LLM workflows (litellm's default if unset).",
    )
    llm_api_key: SecretStr | None = Field(
        default=None, description="API key for LLM workflows (kept secret, never printed)."
    )
    log_level: str = Field(default="INFO", description="Log level of every component.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text, or as JSON (component, case_id, event_id, trace_id).",
    )
    log_max_bytes: int = Field(
        default=10_000_000,
        ge=0,
        description="Size past which a component's log under <home>/logs/<topic prefix>/ is "
        "rotated by `casegate run` (0: never).",
    )
    log_backups: int = Field(
        default=5, ge=0, description="Rotated copies kept of each component log (.1 newest)."
    )
    metrics_port: int = Field(
        default=9400,
        ge=0,
        le=65_000,
        description="Base port of every process's Prometheus /metrics (0: off); see README.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the /metrics endpoints bind to."
    )
    tracing: Literal["off", "console", "otlp"] = Field(
        default="off",
        description="OpenTelemetry traces: off, console (JSON lines on stdout) or otlp.",
    )
    otlp_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        description="Where CASEGATE_TRACING=otlp sends spans (OTLP over HTTP).",
    )
    trace_link: str = Field(
        default="",
        description="The trace viewer's address for one trace, with {trace_id} in it "
        "(e.g. http://127.0.0.1:16686/trace/{trace_id} for Jaeger): the case trace page "
        "links each trace id there. Empty: the ids are shown unlinked.",
    )
    console_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of the console (API and pages, 127.0.0.1)."
    )
    operator_token_ttl_s: float = Field(
        default=30 * 24 * 3600.0,
        gt=0,
        description="How long a console operator's bearer token is valid after it is issued "
        "(`casegate operators add` again to issue a new one once it expired).",
    )
    policy_publisher_roles: str = Field(
        default="admin",
        description="Comma-separated operator roles that may publish a dry-run policy from "
        "the console's policy page (anyone signed in may dry-run one).",
    )
    token_unused_s: float = Field(
        default=14 * 24 * 3600.0,
        gt=0,
        description="An active operator token unused this long (or never used this long "
        "after it was issued) is flagged by `casegate report access`.",
    )
    console_session_ttl_s: float = Field(
        default=8 * 3600.0,
        gt=0,
        description="How long a sign-in to the console pages lasts (sign-out ends it at once).",
    )
    console_secure_cookie: bool = Field(
        default=False,
        description="Mark the console's sign-in cookie Secure (set when served behind HTTPS).",
    )
    approval_tick_s: float = Field(
        default=1.0, gt=0, description="How often the approve processor looks for expired items."
    )
    review_wait_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a review waits for the decision it answers before it is refused.",
    )
    batch_max: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Most records a processor takes in one batch (one Kafka transaction).",
    )
    batch_wait_ms: float = Field(
        default=5.0,
        ge=0,
        le=1_000,
        description="How long a processor waits after a batch's first record for more.",
    )
    poll_timeout_s: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description="Longest a processor waits for records before looking at its timers.",
    )
    state_retention_s: float = Field(
        default=30 * 86_400.0,
        gt=0,
        description="How long processors keep a case's state after it resolves (or closes).",
    )
    max_text_chars: int = Field(
        default=100_000,
        ge=1_000,
        description="Most characters of text one upstream event may carry (all its strings "
        "together); intake dead-letters a longer one with the reason.",
    )
    execute_concurrency: int = Field(
        default=32,
        ge=1,
        le=1_000,
        description="Most actions the executor runs at once (one case's run one at a time).",
    )
    instance: int = Field(
        default=0,
        ge=0,
        description="This worker's number among the instances of a processor (--instance N).",
    )
    txn_hold_ms: float = Field(
        default=0.0,
        ge=0,
        le=60_000,
        description="Fault injection for tests only: hold every processor transaction open "
        "this long before committing (0 in production).",
    )
    recommend_refit_after_s: float = Field(
        default=300.0,
        gt=0,
        description="Seconds after the recommender's last refit started when it refits again "
        "on the labels changed since, if fewer than its count threshold (1,000) changed.",
    )
    rollout_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often the rollout processor judges every workflow's evidence "
        "(promotion proposals, demotion triggers).",
    )
    state_sweep_s: float = Field(
        default=10.0,
        gt=0,
        description="How often processors delete state entries past their retention.",
    )

    @field_validator("customer_clear_fields", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def local_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def local_postgres(self) -> bool:
        return self.database_url is None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``cases``."""
        return f"{self.topic_prefix}{name}"
