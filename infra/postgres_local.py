"""A project-local PostgreSQL server from the OS packages, run as the ``postgres`` user.

Data lives under ``<home>/postgres`` (or, when the ``postgres`` user cannot reach the project
folder, under /var/lib/postgresql/casegate-<hash>). It listens on 127.0.0.1 only. The
superuser and the application role get generated passwords kept in files readable by root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from infra.procs import port_open
from infra.secrets import secret_file, write_private
from infra.settings import Settings
from infra.setup_errors import SetupError

APP_ROLE = "casegate"
PG_HINT = "Install PostgreSQL, e.g. `apt-get install -y postgresql` (run as root)."


def _pg_bin() -> Path:
    """Newest installed server binaries; installs the OS packages when root and missing."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        if os.geteuid() != 0:
            raise SetupError("PostgreSQL server binaries are not installed.", PG_HINT)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "postgresql", "postgresql-contrib"],
        ):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SetupError(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-2000:]}", PG_HINT)
        return _pg_bin()
    return candidates[-1].parent


@dataclass(frozen=True)
class LocalPostgres:
    settings: Settings

    @property
    def root(self) -> Path:
        preferred = self.settings.home / "postgres"
        if _reachable_by_postgres(self.settings.home):
            return preferred
        digest = hashlib.sha256(str(self.settings.home.resolve()).encode()).hexdigest()[:12]
        return Path("/var/lib/postgresql") / f"casegate-{digest}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def _secret(self, name: str) -> str:
        """A generated password kept beside the cluster (created on first use)."""
        return secret_file(self.settings.home / "secrets" / name)

    def admin_url(self, dbname: str = "postgres") -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.settings.pg_port,
            user="postgres",
            password=self._secret("pg_superuser"),
            dbname=dbname,
        )

    def app_url(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.settings.pg_port,
            user=APP_ROLE,
            password=self._secret("pg_app"),
            dbname=dbname,
        )

    # -- lifecycle -----------------------------------------------------------------------
    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        proc = self._as_postgres([str(_pg_bin() / "pg_ctl"), "status", "-D", str(self.data)])
        return proc.returncode == 0

    def up(self) -> str:
        port = self.settings.pg_port
        if self.running():
            self.ensure_database(self.settings.db_name)
            return f"PostgreSQL on 127.0.0.1:{port} is ours: reusing it"
        if port_open(port):
            raise SetupError(
                f"Port 127.0.0.1:{port} is taken by another program.",
                "Stop it, pick another port with CASEGATE_PG_PORT, or point "
                "DATABASE_URL at an existing server.",
            )
        bindir = _pg_bin()
        if os.geteuid() == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.chown(self.root, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bindir)
        proc = self._as_postgres(
            [
                str(bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.log_file),
                "-o",
                f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={self.data}",
            ]
        )
        if proc.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise SetupError(
                f"PostgreSQL did not start:\n{proc.stderr}{tail}",
                f"Read the server log at {self.log_file}.",
            )
        self.ensure_database(self.settings.db_name)
        return f"PostgreSQL started on 127.0.0.1:{port}; log: {self.log_file}"

    def down(self) -> str:
        if not self.running():
            return "PostgreSQL: not running"
        self._as_postgres(
            [str(_pg_bin() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data)]
        )
        return "PostgreSQL stopped"

    def ensure_database(self, dbname: str) -> None:
        """Create the application role and the database if missing (idempotent)."""
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(self._secret("pg_app"))
                )
            )
            if (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
                is None
            ):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def drop_database(self, dbname: str) -> None:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )

    # -- internals -----------------------------------------------------------------------
    def _initdb(self, bindir: Path) -> None:
        pwfile = self.root / ".initpw"
        write_private(pwfile, self._secret("pg_superuser"))
        shutil.chown(pwfile, "postgres", "postgres")
        try:
            proc = self._as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise SetupError(
                f"initdb failed:\n{proc.stdout}{proc.stderr}", f"Remove {self.data} and try again."
            )

    def _as_postgres(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        """The server refuses to run as root, so root runs its tools as ``postgres``."""
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(
            cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )


def _reachable_by_postgres(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(path)],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0
