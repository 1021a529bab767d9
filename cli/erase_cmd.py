"""`casegate erase CUSTOMER_ID`: crypto-shredding of one customer's personal data.

Intake sealed the customer's personal fields under their data keys (`policy.sealing`);
destroying the keys makes every sealed copy unreadable at once — on the topics, in the
read models, in any replay — while the events themselves stay as they are, so metrics,
the audit chain and every derived id are untouched.

Order of the steps, and why: the keys are destroyed inside a PostgreSQL transaction,
the `CustomerErased` event is produced and acknowledged (acks=all) while it is open,
and only then does it commit. A failed produce rolls the erasure back (nothing
happened, run it again); a failed commit after the event leaves the keys alive with
the event on record, and running the command again destroys them and records it again.
"""

from __future__ import annotations

from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.console import Console

from cli.operators_cmd import _connect
from console.auth import authenticate
from console.send import send_acknowledged
from infra.keys import customer_id_ref, erase_customer
from infra.secrets import install_event_id_key
from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import CustomerErased, new_event_id, record_key, utc_now

out = Console()
err = Console(stderr=True, soft_wrap=True)
# Who may erase: destroying a customer's data cannot be undone.
ERASE_ROLES = ("supervisor", "ops")


def erase(
    customer_id: Annotated[str, typer.Argument(help="the customer's `customer.id`")],
    token: Annotated[
        str,
        typer.Option(
            envvar="CASEGATE_OPERATOR_TOKEN",
            prompt="operator token",
            hide_input=True,
            help="your operator bearer token (a supervisor or ops role)",
        ),
    ],
    reason: Annotated[str | None, typer.Option(help="why, e.g. the request's reference")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Destroy a customer's data keys: their personal data becomes unreadable everywhere."""
    settings = Settings()
    install_event_id_key(settings)
    ref = customer_id_ref(settings, customer_id)
    with _connect(settings) as conn:
        operator = authenticate(conn, token)
        if operator is None:
            err.print("[red]error:[/] the token is unknown, expired or revoked.")
            err.print("[yellow]next:[/] ask for a token with `casegate operators add`.")
            raise typer.Exit(1)
        if not set(operator.roles) & set(ERASE_ROLES):
            err.print(f"[red]error:[/] {operator.name} holds {', '.join(operator.roles)}.")
            err.print(f"[yellow]next:[/] erasure needs the role {' or '.join(ERASE_ROLES)}.")
            raise typer.Exit(1)
        live = conn.execute(
            "SELECT count(*) FROM data_keys WHERE customer_ref = %s AND wrapped IS NOT NULL",
            (ref,),
        ).fetchone()
        if not live or not live[0]:
            out.print(f"customer {customer_id} has no live data key: nothing to erase.")
            return
        if not yes:
            typer.confirm(
                f"Destroy {live[0]} data key(s) of customer {customer_id}? Their personal "
                "data becomes unreadable for good",
                abort=True,
            )
        with conn.transaction():
            key_ids = erase_customer(conn, ref, operator.name)
            event = CustomerErased(
                event_id=new_event_id(),
                case_id="erasure",
                occurred_at=utc_now(),
                actor=operator.name,
                roles=operator.roles,
                customer_ref=ref,
                key_ids=tuple(key_ids),
                reason=reason,
            )
            try:
                send_acknowledged(settings, Codec.load(), event, record_key(event))
            except KafkaException as exc:
                err.print(f"[red]error:[/] {exc}")
                err.print("[yellow]next:[/] nothing was erased; check `casegate status`, retry.")
                raise typer.Exit(1) from None
    out.print(
        f"erased customer {customer_id}: {len(key_ids)} data key(s) destroyed by "
        f"{operator.name}; recorded as CustomerErased {event.event_id}"
    )
