"""The deployment's secrets on disk: owner-only from the start, one value per deployment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import SecretStr

from infra.secrets import anchor_key, event_id_key, install_event_id_key, secret_file
from infra.settings import Settings
from schemas.events import derived_event_id


def test_a_secret_file_is_created_owner_only_and_then_kept(tmp_path: Path) -> None:
    # Given a permissive umask (the file's mode must not depend on it) ...
    old_umask = os.umask(0o002)
    try:
        first = secret_file(tmp_path / "secrets" / "k")
    finally:
        os.umask(old_umask)

    path = tmp_path / "secrets" / "k"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert len(bytes.fromhex(first)) == 32
    # A second call reads the same value, and no temporary file is left behind.
    assert secret_file(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["k"]


def test_the_local_key_is_generated_once_per_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)

    key = event_id_key(settings)

    assert key == event_id_key(Settings(home=tmp_path))
    assert key != event_id_key(Settings(home=tmp_path / "other"))
    assert (tmp_path / "secrets" / "event_id_key").read_text().encode() == key


def test_the_configured_key_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, event_id_key=SecretStr("a-deployment-wide-secret"))

    assert event_id_key(settings) == b"a-deployment-wide-secret"
    assert not (tmp_path / "secrets").exists()


def test_installing_the_key_makes_the_ids_the_deployment_s_own(tmp_path: Path) -> None:
    one = Settings(home=tmp_path, event_id_key=SecretStr("deployment-one-secret-key"))
    two = Settings(home=tmp_path, event_id_key=SecretStr("deployment-two-secret-key"))

    install_event_id_key(one)
    id_one = derived_event_id("cause", "ExecutionRequested")
    install_event_id_key(two)
    id_two = derived_event_id("cause", "ExecutionRequested")
    install_event_id_key(one)

    assert id_one != id_two
    assert derived_event_id("cause", "ExecutionRequested") == id_one


def test_the_anchor_key_is_not_the_event_id_key(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, event_id_key=SecretStr("a-deployment-wide-secret"))

    assert anchor_key(settings) != event_id_key(settings)
    assert anchor_key(settings) == anchor_key(settings)
