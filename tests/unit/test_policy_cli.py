"""Given policy files, when `casegate policy validate` or `diff OLD NEW` runs, then every
problem is listed with its path in the document (exit 2), or the changes one per line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from policy.loader import default_policy_path

DEFAULT = default_policy_path().read_text()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["policy", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_valid_policy_is_reported_with_its_version_and_digest() -> None:
    code, out, _ = run("validate", str(default_policy_path()))

    assert code == 0
    assert "valid policy 2026.11.1 (sha256 " in out


def test_every_problem_is_listed_with_its_path_and_nothing_else_happens(tmp_path: Path) -> None:
    broken = DEFAULT.replace(
        "      change_plan: {mode: approve}", "      change_plan: {mode: sometimes}"
    ).replace("    timeout_s: 10\n", "    timeout_s: -1\n", 1)
    path = tmp_path / "broken.yaml"
    path.write_text(broken)

    code, _, err = run("validate", str(path))

    assert code == 2
    assert "catalog.reset_password.timeout_s: Input should be greater than 0" in err
    assert "workflows.billing.actions.change_plan.mode: Input should be " in err
    assert "2 problem(s); nothing done" in err


def test_a_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "syntax.yaml"
    path.write_text("version: [unclosed\n")

    code, _, err = run("validate", str(path))

    assert code == 2 and err.startswith("(document): YAML syntax error at line")


def test_diff_of_two_files_lists_each_change(tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(
        DEFAULT.replace('version: "2026.11.1"', 'version: "2026.11.2"').replace(
            "    phase: assisted\n", "    phase: bounded\n"
        )
    )

    code, out, _ = run("diff", str(default_policy_path()), str(new))

    assert code == 0
    assert "version: 2026.11.1 -> 2026.11.2" in out
    assert "workflows.billing.phase: assisted -> bounded" in out


def test_publishing_an_invalid_policy_sends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(DEFAULT.replace("version: ", "versio: ", 1))

    code, _, err = run("publish", str(path), "--author", "ann")

    assert code == 2  # refused before any connection to Kafka is made
    assert "version: Field required" in err
