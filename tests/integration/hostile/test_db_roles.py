"""The application cannot rewrite the audit log: it connects as a role that is neither a
superuser nor the tables' owner, and refuses to start as one that is (issue 14: the
compose path ran the application as the superuser, who can disable the append-only
trigger)."""

from __future__ import annotations

import secrets
import subprocess
import sys

import psycopg
import pytest
from psycopg import sql

from infra.db import check_app_role, database_urls
from infra.sandbox import child_env
from infra.settings import PROJECT_ROOT
from infra.setup_errors import SetupError
from tests.stack import Stack


def test_the_application_role_cannot_touch_the_audit_trail(stack: Stack) -> None:
    settings = stack.isolated()
    urls = database_urls(settings)
    check_app_role(urls.app)  # the role every component uses passes
    with psycopg.connect(urls.app, autocommit=True) as conn:
        for attack in (
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_log_no_update ON audit_log",
            "DELETE FROM audit_log",
            "UPDATE audit_log SET payload = payload",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attack)  # type: ignore[arg-type]  # literal statements


def test_a_superuser_or_the_owner_as_application_role_is_refused(stack: Stack) -> None:
    settings = stack.isolated()
    urls = database_urls(settings)
    with pytest.raises(SetupError, match="is a superuser"):
        check_app_role(urls.admin)
    owner, password = f"cg_owner_{secrets.token_hex(4)}", secrets.token_hex(16)
    with psycopg.connect(urls.admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(owner), sql.Literal(password)
            )
        )
        conn.execute(sql.SQL("ALTER TABLE audit_log OWNER TO {}").format(sql.Identifier(owner)))
    try:
        as_owner = psycopg.conninfo.make_conninfo(urls.app, user=owner, password=password)
        with pytest.raises(SetupError, match="owns the audit log"):
            check_app_role(as_owner)
        # The read models will not start as such a role, and say what to do.
        env = {**child_env(settings), "DATABASE_URL": as_owner}
        done = subprocess.run(
            [sys.executable, "-m", "projections.worker", "readmodels"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0
        assert "owns the audit log" in done.stderr and "CASEGATE_ADMIN_DATABASE_URL" in done.stderr
    finally:
        with psycopg.connect(urls.admin, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit_log OWNER TO CURRENT_USER")
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))
