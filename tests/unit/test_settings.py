"""Settings come from the environment, and the README documents every variable."""

from __future__ import annotations

import pytest

from infra.settings import PROJECT_ROOT, Settings


def env_names() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.append(str(choices[0]) if choices else f"CASEGATE_{name.upper()}")
    return names


def test_the_readme_documents_every_variable() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [n for n in env_names() if f"| `{n}` |" not in readme]
    assert missing == []


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("CASEGATE_TOPIC_PREFIX", "acme.")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/x")
    s = Settings()
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.topic("cases") == "acme.cases"
    assert not s.local_kafka and not s.local_postgres
    assert "secret" not in repr(s)  # secrets never show in logs or tracebacks


def test_without_a_broker_named_the_local_one_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("CASEGATE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("CASEGATE_KAFKA_PORT", "19092")
    s = Settings()
    assert s.local_kafka
    assert s.bootstrap_servers == "127.0.0.1:19092"
