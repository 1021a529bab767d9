"""`python -m schemas.snapshot` keeps the current version readable before an edit."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from schemas.codec import Codec
from schemas.events import ActionSpec, ExecutionRequested
from schemas.registry import BUNDLED_DIR
from schemas.snapshot import main, snapshot
from tests.samples import sample_events


def _copy_of_bundled(tmp_path: Path) -> Path:
    directory = tmp_path / "schemas"
    shutil.copytree(BUNDLED_DIR, directory, ignore=shutil.ignore_patterns("*.py", "history"))
    return directory


def test_snapshot_keeps_old_bytes_readable_after_a_shared_type_changes(tmp_path: Path) -> None:
    # Given an older world where ActionSpec had no params, with bytes written then ...
    directory = _copy_of_bundled(tmp_path)
    history = directory / "history"
    types_file = directory / "_types.avsc"
    current_types = types_file.read_text()
    shared = json.loads(current_types)
    shared[0]["fields"] = [f for f in shared[0]["fields"] if f["name"] != "params"]
    types_file.write_text(json.dumps(shared))
    sample = next(e for e in sample_events() if e.event_type == "ExecutionRequested")
    assert isinstance(sample, ExecutionRequested)
    old_value, headers = Codec.load(directory).encode(sample)
    # ... and a snapshot taken before the edit that added params.
    path = snapshot("ExecutionRequested", directory, history)

    types_file.write_text(current_types)
    codec = Codec.load(directory, history)

    # The snapshot is self-contained, and the old bytes decode with params defaulted.
    assert path.name == "ExecutionRequested.v1.avsc"
    assert "casegate.ActionSpec" not in path.read_text()
    assert codec.encode(sample)[0][2:10] != old_value[2:10]
    decoded = codec.decode(old_value, headers)
    assert decoded == dataclasses.replace(sample, action=ActionSpec(name=sample.action.name))


def test_snapshot_refuses_to_keep_the_same_version_twice(tmp_path: Path) -> None:
    directory = _copy_of_bundled(tmp_path)
    snapshot("CaseReopened", directory, directory / "history")

    with pytest.raises(SystemExit, match="already kept"):
        snapshot("CaseReopened", directory, directory / "history")


def test_snapshot_numbers_versions_after_the_highest(tmp_path: Path) -> None:
    directory = _copy_of_bundled(tmp_path)
    history = directory / "history"
    history.mkdir()
    old = json.loads((directory / "CaseUpdated.avsc").read_text())
    old["fields"] = [f for f in old["fields"] if f["name"] != "note"]
    (history / "CaseUpdated.v3.avsc").write_text(json.dumps(old))

    assert snapshot("CaseUpdated", directory, history).name == "CaseUpdated.v4.avsc"


def test_main_without_arguments_prints_usage() -> None:
    assert main([]) == 2
