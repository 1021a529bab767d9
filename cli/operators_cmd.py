"""`casegate operators add|list|revoke`: who may use the console, with which roles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from console.auth import OperatorError, add_operator, list_operators, revoke_operator
from infra.db import database_urls
from infra.settings import Settings

app = typer.Typer(
    help="Console operators: bearer tokens mapped to an operator id and roles.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _connect(settings: Settings) -> psycopg.Connection:
    try:
        return psycopg.connect(database_urls(settings).app, autocommit=True)
    except psycopg.OperationalError as exc:
        err.print(f"[red]error:[/] cannot reach PostgreSQL: {exc}")
        err.print("[yellow]next:[/] run `casegate up` (or set DATABASE_URL).")
        raise typer.Exit(1) from None


def _known_roles(conn: psycopg.Connection) -> tuple[str, ...] | None:
    from console.api.policies import PolicyCache

    in_force = PolicyCache().get(conn)
    return None if in_force is None else tuple(in_force.loaded.policy.roles)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="operator id, written into events as the actor")],
    roles: Annotated[
        list[str],
        typer.Option(
            "--roles", help="role(s) from the policy, comma-separated or the option repeated"
        ),
    ],
) -> None:
    """Create an operator and print its new bearer token (shown once, stored hashed)."""
    wanted = tuple(r.strip() for item in roles for r in item.split(",") if r.strip())
    settings = Settings()
    with _connect(settings) as conn:
        known = _known_roles(conn)
        try:
            token = add_operator(conn, name, wanted, known, settings.operator_token_ttl_s)
        except OperatorError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
    if known is None:
        err.print("[yellow]note:[/] no policy published yet, so the roles were not checked")
    err.print(f"operator {name} ({', '.join(wanted)}) created; its token, shown only this once:")
    # The token alone on stdout, so scripts can capture it (rich would wrap or style it).
    typer.echo(token)


@app.command("list")
def list_() -> None:
    """List operators with their roles and whether their token is active (never the token)."""
    with _connect(Settings()) as conn:
        records = list_operators(conn)
    table = Table("operator", "roles", "created (UTC)", "status")
    now = datetime.now(UTC)
    for r in records:
        revoked = r.revoked_at.astimezone(UTC) if r.revoked_at else None
        expires = r.expires_at.astimezone(UTC)
        if revoked is not None:
            status = f"revoked {revoked:%Y-%m-%d %H:%M}"
        elif expires <= now:
            status = f"expired {expires:%Y-%m-%d %H:%M}"
        else:
            status = f"active until {expires:%Y-%m-%d %H:%M}"
        created = r.created_at.astimezone(UTC)
        table.add_row(r.name, ", ".join(r.roles), f"{created:%Y-%m-%d %H:%M}", status)
    out.print(table)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="the operator whose token to revoke")]) -> None:
    """Revoke an operator's token; requests made with it fail from now on."""
    with _connect(Settings()) as conn:
        try:
            revoke_operator(conn, name)
        except OperatorError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
    out.print(f"revoked {name}: its token no longer works")
