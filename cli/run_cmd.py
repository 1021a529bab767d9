"""`casegate run`: the whole system under one supervisor, with an optional live demo.

`make run` is `casegate run --demo`: up → topics and migrations → the default policy
published (when another is not already in force) → every processor, the read models and the
console, supervised → demo operators with fresh tokens → the demo workload (history, then a
live stream) → the console URL, the tokens and a metrics summary.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from cli.failures import exit_on_setup_error
from infra.acl import PUBLISHER
from infra.kafka_auth import as_principal
from infra.settings import Settings
from infra.setup_errors import SetupError

out = Console()
err = Console(stderr=True, soft_wrap=True)

# Who can try the console after `make run`, and what each may do under the default policy.
DEMO_OPERATORS = {
    "sam": ("supervisor",),
    "fay": ("finance_lead",),
    "ada": ("agent",),
}


def run(
    components: Annotated[
        list[str] | None, typer.Argument(help="components to run (default: all)")
    ] = None,
    demo: Annotated[
        bool, typer.Option(help="publish the demo workload and print where to look")
    ] = False,
    cases: Annotated[int, typer.Option(min=1, help="demo cases")] = 400,
    rate: Annotated[float, typer.Option(min=0.1, help="demo live events per second")] = 25.0,
    seed: Annotated[int, typer.Option(help="demo seed")] = 7,
    stay: Annotated[
        bool | None,
        typer.Option(help="keep running after the demo (default: when attached to a terminal)"),
    ] = None,
) -> None:
    """Start the stack and run casegate's processors, read models and console, supervised;
    a crashed component is reported and restarted."""
    from cli.supervisor import COMPONENTS, Supervisor, log_folder

    settings = Settings()
    exit_on_setup_error(lambda: _prepare(settings))
    chosen = components or list(COMPONENTS)
    supervisor = Supervisor(
        chosen,
        log_folder(settings.home, settings.topic_prefix),
        out.print,
        log_max_bytes=settings.log_max_bytes,
        log_backups=settings.log_backups,
    )
    supervisor.start()
    try:
        if demo:
            exit_on_setup_error(lambda: _demo(settings, supervisor, cases, rate, seed))
        # Without a terminal (CI, scripts) a demo run ends once the demo has been shown.
        if stay if stay is not None else (sys.stdin.isatty() or not demo):
            out.print(
                "[green]running[/] — Ctrl-C stops the components; Kafka and PostgreSQL "
                "keep running until `make down`."
            )
            supervisor.run_until_signal()
    finally:
        supervisor.stop()


def _prepare(settings: Settings) -> None:
    from infra.bootstrap import provision, services_up

    services_up(settings, out.print)
    provision(settings, out.print)
    _ensure_policy(settings)


def _ensure_policy(settings: Settings) -> None:
    """Publish policy/default.yaml unless a policy is already in force."""
    from console.policy_topic import publish_policy, read_published
    from policy.loader import default_policy_path, load_policy_file
    from schemas.codec import Codec

    codec = Codec.load()
    settings = as_principal(settings, PUBLISHER)
    default = load_policy_file(default_policy_path())
    current = read_published(settings, codec)
    if current is not None and current.sha256 == default.sha256:
        out.print(f"Policy: {current.version} in force (policy/default.yaml)")
        return
    if current is not None:
        out.print(
            f"Policy: {current.version} by {current.author} in force; keeping it "
            "(`casegate policy publish policy/default.yaml` to switch)"
        )
        return
    event = publish_policy(settings, codec, default, author="casegate run")
    out.print(f"Policy: published {event.version} from policy/default.yaml")


def _demo(settings: Settings, supervisor: object, cases: int, rate: float, seed: int) -> None:
    from cli.demo_cmd import publish_workload

    tokens = _demo_operators(settings)
    publish_workload(as_principal(settings, "upstream"), seed, cases, 0.6, rate)
    _wait_for_pipeline(settings, seed, cases)
    url = f"http://127.0.0.1:{settings.console_port}/"
    table = Table("operator", "roles", "token (shown once)", title="sign in with")
    for name, token in tokens.items():
        table.add_row(name, ", ".join(DEMO_OPERATORS[name]), token)
    out.print(table)
    out.print(f"console: [bold]{url}[/]  (API docs: {url}api/docs)")
    from cli.readside_cmd import metrics

    metrics(by=["workflow", "phase"])


def _demo_operators(settings: Settings) -> dict[str, str]:
    """Fresh tokens for the demo operators (the old ones are revoked: tokens are shown once)."""
    from console.auth import add_operator, revoke_operator
    from infra.db import database_urls

    tokens = {}
    with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
        for name, roles in DEMO_OPERATORS.items():
            exists = conn.execute(
                "SELECT 1 FROM operators WHERE name = %s AND revoked_at IS NULL", (name,)
            ).fetchone()
            if exists:
                revoke_operator(conn, name)
            tokens[name] = add_operator(
                conn, name, roles, known_roles=None, ttl_s=settings.operator_token_ttl_s
            )
    return tokens


def _wait_for_pipeline(settings: Settings, seed: int, cases: int, timeout_s: float = 300.0) -> None:
    """Until every demo case of this seed is open in case_state with a guard decision."""
    from cli import readside_cmd
    from cli.progress import progress
    from infra.db import database_urls

    deadline = time.monotonic() + timeout_s
    with (
        psycopg.connect(database_urls(settings).app, autocommit=True) as conn,
        progress(readside_cmd.out) as bar,
    ):
        task = bar.add_task("cases through intake → recommend → guard → read models", total=cases)
        while True:
            row = conn.execute(
                "SELECT count(DISTINCT c.case_id) FROM case_state c JOIN recommendation_facts r"
                " ON r.case_id = c.case_id WHERE c.opened_at IS NOT NULL AND r.outcome IS NOT "
                "NULL AND c.case_id LIKE %s",
                (f"case-{seed}-%",),
            ).fetchone()
            done = int(row[0]) if row else 0
            bar.update(task, completed=min(done, cases))
            if done >= cases:
                return
            if time.monotonic() > deadline:
                from cli.supervisor import log_folder

                logs = log_folder(settings.home, settings.topic_prefix)
                raise SetupError(
                    f"only {done} of {cases} demo cases went through the pipeline "
                    f"within {timeout_s:.0f}s",
                    f"Read the component logs under {logs}.",
                )
            time.sleep(1.0)
