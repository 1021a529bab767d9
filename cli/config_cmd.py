"""`casegate config [--show-secrets]`: the settings in force, where they come from, and
the connection details a user needs to point psql, a BI tool or a Kafka client at them."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import psycopg
import typer
from pydantic import SecretStr
from rich.console import Console

from cli.tables import Col, print_fitted
from infra.settings import Settings
from infra.setup_errors import SetupError

out = Console(highlight=False)
HIDDEN = "****"


def database_url(conninfo: str, show_secrets: bool) -> str:
    """A libpq conninfo string as a postgresql:// URL, its password hidden unless asked."""
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = quote(str(parts.get("user") or ""), safe="")
    password = str(parts.get("password") or "")
    if password:
        user += ":" + (quote(password, safe="") if show_secrets else HIDDEN)
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}@{host}{port}/{quote(str(parts.get('dbname') or ''), safe='')}"


def connections(settings: Settings, show_secrets: bool) -> list[tuple[str, str]]:
    """(what, value) of the database URLs and the Kafka connection, as clients see them."""
    from infra.db import database_urls
    from infra.kafka_auth import resolve

    rows: list[tuple[str, str]] = []
    if settings.local_postgres and not (settings.home / "secrets" / "pg_app").exists():
        # Asking for the local URLs would generate their passwords; say what to do instead.
        rows.append(("database", "local server not set up yet: run `casegate up`"))
    else:
        urls = database_urls(settings)
        rows.append(("database (application)", database_url(urls.app, show_secrets)))
        rows.append(("database (migrations)", database_url(urls.admin, show_secrets)))
    rows.append(("kafka bootstrap", settings.bootstrap_servers))
    try:
        auth = resolve(settings)
    except SetupError as exc:
        rows.append(("kafka security", f"{exc}"))
        return rows
    rows.append(("kafka security", auth.protocol))
    if auth.protocol.startswith("SASL"):
        rows.append(("kafka sasl", f"{auth.mechanism} as {auth.username}"))
        if show_secrets:
            rows.append(("kafka sasl password", auth.password or ""))
    if auth.tls:
        rows.append(("kafka tls ca", str(auth.ca_location or "system trust store")))
    return rows


def settings_rows(settings: Settings, show_secrets: bool) -> list[tuple[str, str, str]]:
    """(variable, value in force, default or set) for every setting."""
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        aliases = getattr(field.validation_alias, "choices", None)
        variable = str(aliases[0]) if aliases else f"CASEGATE_{name.upper()}"
        if isinstance(value, SecretStr):
            shown = value.get_secret_value() if show_secrets else HIDDEN
        else:
            shown = "(unset)" if value is None else str(value)
        origin = "set" if name in settings.model_fields_set else "default"
        rows.append((variable, shown, origin))
    return rows


def config(
    show_secrets: Annotated[
        bool, typer.Option(help="print passwords instead of hiding them (keep the output private)")
    ] = False,
) -> None:
    """Print the settings in force: the database URLs (password hidden unless
    --show-secrets), the Kafka bootstrap servers and security, then every variable."""
    settings = Settings()
    # Plain lines, never folded: a URL must copy whole into psql or a BI tool.
    out.print("connections in force", style="bold")
    for what, value in connections(settings, show_secrets):
        out.print(f"  {what}: {value}", soft_wrap=True)
    print_fitted(
        out,
        [Col(h, justify="left") for h in ("variable", "value", "from")],
        settings_rows(settings, show_secrets),
        title="settings (environment variables; README, Configuration)",
    )
