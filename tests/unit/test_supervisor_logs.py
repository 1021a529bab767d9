"""Given component logs, when the supervisor (re)starts or watches a component, then each
topic prefix has its own folder, logs are appended, and a full log is rotated."""

from __future__ import annotations

from pathlib import Path

from cli.supervisor import log_folder, rotate


def test_each_topic_prefix_logs_into_its_own_folder(tmp_path: Path) -> None:
    assert log_folder(tmp_path, "casegate.") == tmp_path / "logs" / "casegate"
    assert log_folder(tmp_path, "desk-b.") == tmp_path / "logs" / "desk-b"
    assert log_folder(tmp_path, "") == tmp_path / "logs" / "_"


def test_a_log_under_its_limit_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "guard.log"
    log.write_text("first run\n")

    assert not rotate(log, max_bytes=100, backups=2)
    assert log.read_text() == "first run\n"


def test_a_full_log_is_rotated_in_place_keeping_the_newest_backups(tmp_path: Path) -> None:
    log = tmp_path / "guard.log"
    for run in ("one", "two", "three"):
        with log.open("a") as writer:  # the child's O_APPEND handle stays valid
            writer.write(f"{run} " * 20)
            writer.flush()
            assert rotate(log, max_bytes=50, backups=2)
            writer.write("after")
        assert log.read_text() == "after"
        log.write_text("")

    assert (tmp_path / "guard.log.1").read_text().startswith("three")
    assert (tmp_path / "guard.log.2").read_text().startswith("two")
    assert not (tmp_path / "guard.log.3").exists()
