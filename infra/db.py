"""Which PostgreSQL to use, and the ordered SQL migrations that shape it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from infra.settings import PROJECT_ROOT, Settings
from infra.setup_errors import SetupError

MIGRATIONS = PROJECT_ROOT / "infra" / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class DatabaseUrls:
    app: str  # what components connect with
    admin: str  # what migrations run with (DDL rights)


def database_urls(settings: Settings) -> DatabaseUrls:
    """DATABASE_URL when set, else the local server started by `casegate up`."""
    if settings.database_url is not None:
        app = settings.database_url.get_secret_value()
        admin = (
            settings.admin_database_url.get_secret_value() if settings.admin_database_url else app
        )
        return DatabaseUrls(app=app, admin=admin)
    from infra.postgres_local import LocalPostgres

    local = LocalPostgres(settings)
    return DatabaseUrls(
        app=local.app_url(settings.db_name), admin=local.admin_url(settings.db_name)
    )


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def load_migrations(folder: Path = MIGRATIONS) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name} is not named NNN_lower_snake.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {folder}")
    return found


class MigrationChanged(RuntimeError):
    pass


def migrate(urls: DatabaseUrls, folder: Path = MIGRATIONS, schema: str = "public") -> list[str]:
    """Apply the migrations not yet applied, in one transaction; returns their names.

    An applied migration whose text has changed is an error: migrations are history.
    ``schema`` lets a replay build a second, fresh set of read models beside the live one.
    """
    applied: list[str] = []
    app_user = str(psycopg.conninfo.conninfo_to_dict(urls.app).get("user") or "")
    ident = sql.Identifier(schema)
    with psycopg.connect(urls.admin) as conn, conn.transaction():
        # Serialise concurrent migrators (several components may start at once).
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('casegate.migrations'))")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                            version int PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,
                            applied_at timestamptz NOT NULL DEFAULT now())""")
        done: dict[int, str] = dict(
            conn.execute("SELECT version, sha256 FROM schema_migrations").fetchall()
        )
        if app_user and app_user != conn.info.user:
            role = sql.Identifier(app_user)
            conn.execute("SELECT set_config('casegate.app_role', %s, true)", (app_user,))
            # Tables created by migrations are usable by the application role; migrations
            # narrow this where a table must be append-only.
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident, role))
            conn.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT, INSERT, "
                    "UPDATE, DELETE ON TABLES TO {}"
                ).format(ident, role)
            )
        for migration in load_migrations(folder):
            if migration.version in done:
                if done[migration.version] != migration.sha256:
                    raise MigrationChanged(
                        f"{migration.name} changed after it was applied; add a new "
                        "migration instead of editing an old one"
                    )
                continue
            conn.execute(migration.text.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.sha256),
            )
            applied.append(migration.name)
    return applied


def role_problem(conn: psycopg.Connection) -> str | None:
    """Why the role `conn` is signed in as must not be the application's, or None.

    The audit log is append-only by a trigger and by revoked rights; a superuser, or the
    role owning the table, can drop the trigger and rewrite history. So the application
    connects as a role of its own and the migrations run as the owner.
    """
    row = conn.execute(
        "SELECT current_user, r.rolsuper, "
        "c.oid IS NOT NULL AND pg_has_role(current_user, c.relowner, 'USAGE') "
        "FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass('audit_log') "
        "WHERE r.rolname = current_user"
    ).fetchone()
    if row is None:
        return None
    user, superuser, owner = row
    if superuser:
        return f"the application's database role {user!r} is a superuser"
    if owner:
        return f"the application's database role {user!r} owns the audit log"
    return None


def check_app_role(url: str) -> None:
    """Refuse to run the application as a role that could rewrite the audit log."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        problem = role_problem(conn)
    if problem is not None:
        raise SetupError(
            f"{problem}: it could disable the audit log's append-only trigger",
            "give DATABASE_URL a login role of its own (no superuser, not the tables' owner) "
            "and CASEGATE_ADMIN_DATABASE_URL the owner that runs the migrations "
            "(infra/docker-compose.yml shows both)",
        )
