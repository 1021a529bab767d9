"""Given the CLI's small read-outs, when they print, then they say what a user needs: the
database URL (password hidden unless asked), out-of-scope as such, tables that fit 80
columns, and a warning when the catalog holds few of history's actions."""

from __future__ import annotations

import io

import psycopg
import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli import eval_cmd
from cli.config_cmd import connections, database_url, settings_rows
from cli.main import app
from cli.tables import Col, fitted, print_fitted
from infra.settings import Settings
from processors.recommend.evaluate import EvalReport, Quality, Score
from projections.queries import segment_label

CONNINFO = psycopg.conninfo.make_conninfo(
    host="127.0.0.1", port=5433, user="casegate", password="s3cr:t", dbname="casegate"
)


def test_database_url_hides_the_password_unless_asked() -> None:
    assert database_url(CONNINFO, False) == "postgresql://casegate:****@127.0.0.1:5433/casegate"
    assert database_url(CONNINFO, True) == "postgresql://casegate:s3cr%3At@127.0.0.1:5433/casegate"


def test_config_shows_an_external_database_and_broker_and_hides_secrets() -> None:
    settings = Settings(
        database_url="postgresql://bi:pw@db.example:5432/reads",  # type: ignore[arg-type]
        kafka_bootstrap_servers="kafka.example:9093",
        kafka_sasl_username="svc",
        kafka_sasl_password="kpw",  # type: ignore[arg-type]
    )

    shown = dict(connections(settings, show_secrets=False))
    variables = {v: (value, origin) for v, value, origin in settings_rows(settings, False)}

    assert shown["database (application)"] == "postgresql://bi:****@db.example:5432/reads"
    assert shown["kafka bootstrap"] == "kafka.example:9093"
    assert (shown["kafka security"], shown["kafka sasl"]) == ("SASL_SSL", "SCRAM-SHA-512 as svc")
    assert variables["KAFKA_SASL_PASSWORD"] == ("****", "set")
    assert variables["CASEGATE_PARTITIONS"] == ("6", "default")
    assert "kpw" not in repr(shown) + repr(variables)
    assert dict(connections(settings, show_secrets=True))["kafka sasl password"] == "kpw"


def test_missing_workflow_and_phase_read_out_of_scope() -> None:
    assert segment_label("workflow", None) == segment_label("phase", None) == "(out of scope)"
    assert segment_label("queue", None) == "(none)"
    assert segment_label("workflow", "billing") == "billing"


METRIC_COLS = [
    Col("workflow", justify="left"),
    *(Col(h, h[:3], f"{h} rate") for h in ("accept", "override", "denial", "error")),
    Col("rollback", "rb"),
    Col("1st action", "1st"),
    Col("resolution", "res"),
    Col("reopen", "reo"),
]
ROW = ("identity_access", "91%", "4%", "0%", "1%", "0%", "12.5 min", "140.2 min", "3%")


@pytest.mark.parametrize("width", [80, 200])
def test_tables_fit_the_terminal_without_cutting_headers(width: int) -> None:
    console = Console(width=width, file=io.StringIO(), record=True)

    print_fitted(console, METRIC_COLS, [ROW], title="metrics by workflow")
    text = console.export_text()

    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    flowing = " ".join(text.split())
    if width == 80:
        assert "acc = accept rate" in flowing and "rb = rollback" in flowing
    else:
        assert "resolution" in text and " = " not in text
    assert "identity_access" in text


def test_full_headers_are_kept_when_they_fit() -> None:
    _, legend = fitted(Console(width=200), METRIC_COLS, [ROW])

    assert legend == []


def report(history_actions: int, uncataloged: tuple[str, ...]) -> EvalReport:
    nothing = Score(0, 0, 0, 0, 0, 0)
    return EvalReport(
        0,
        0,
        None,
        None,
        None,
        nothing,
        Quality(0, 0, 0, 0, 0, 0),
        {},
        history_actions=history_actions,
        uncataloged_actions=uncataloged,
    )


def test_eval_warns_when_the_catalog_holds_few_of_historys_actions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    console = Console(file=io.StringIO(), width=200)
    monkeypatch.setattr(eval_cmd, "err", console)

    eval_cmd._warn_about_catalog(report(3, ("query:x", "query:y", "close")))
    eval_cmd._warn_about_catalog(report(4, ("query:x",)))  # 3 of 4 cataloged: quiet

    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.count("warning:") == 1
    assert "holds 0 of the 3 action names" in text and "query:x, query:y, close" in text


def test_config_prints_each_url_on_one_line_whatever_the_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://bi:pw@db.example:5432/reads")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    monkeypatch.setenv("COLUMNS", "40")

    shown = CliRunner().invoke(app, ["config"])
    revealed = CliRunner().invoke(app, ["config", "--show-secrets"])

    assert shown.exit_code == 0, shown.output
    assert "  database (application): postgresql://bi:****@db.example:5432/reads\n" in shown.stdout
    assert "pw@" not in shown.stdout
    assert "postgresql://bi:pw@db.example:5432/reads\n" in revealed.stdout
