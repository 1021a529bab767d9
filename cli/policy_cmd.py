"""`casegate policy validate|dry-run|publish|diff`: check, try, publish and compare policies.

Errors are printed one per line as `path: message` (the dotted path in the document) and
the command exits with 2. A dry-run decides the recorded recommendations of a window again
under the candidate and reports what would change, publishing nothing. Publishing sends
one PolicyPublished, keyed by its version, to the one-partition `policy` topic (kept
forever), where running processors pick it up; it refuses a candidate nobody dry-ran.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from console.policy_topic import publish_policy, read_policies, read_published
from infra.acl import PUBLISHER
from infra.kafka_auth import as_principal
from infra.secrets import install_event_id_key
from infra.settings import Settings
from policy.loader import (
    LoadedPolicy,
    PolicyInvalid,
    diff_policies,
    load_policy_file,
    load_policy_text,
)
from policy.semantics import policy_warnings
from policy.shape import REFERENCE
from schemas.codec import Codec
from schemas.events import utc_now

app = typer.Typer(help="Validate, publish and compare policy documents.", no_args_is_help=True)
# Plain text: document paths such as `actions[0]` must not be read as rich markup.
out = Console(highlight=False, markup=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
PolicyFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="policy YAML")]
INVALID = 2


Strict = Annotated[
    bool,
    typer.Option(help="refuse a policy with warnings (settings that can never take effect)"),
]


@app.command()
def validate(path: PolicyFile, strict: Strict = False) -> None:
    """Check a policy document; list every problem with its path in the document, then
    every setting that can never take effect on this deployment (warnings)."""
    loaded = _load_or_exit(path)
    _warn_or_exit(path, loaded, Settings(), strict)
    out.print(f"{path}: valid policy {loaded.version} (sha256 {loaded.sha256})")


@app.command("dry-run")
def dry_run(
    path: PolicyFile,
    since: Annotated[
        str, typer.Option(help="window start: a duration back from now (30d, 12h) or a date")
    ] = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    by: Annotated[str | None, typer.Option(help="who looks (default: your login)")] = None,
) -> None:
    """Decide the window's recorded recommendations again under FILE and report, per
    workflow and issue class, which decisions would change. Publishes nothing; the report
    is recorded, which is what `policy publish` asks for."""
    from cli.progress import progress
    from cli.readside_cmd import _connect
    from cli.readside_cmd import out as read_out
    from console.dryrun import parse_since, record_dry_run, run_dry_run

    loaded = _load_or_exit(path)
    try:
        start = parse_since(since, utc_now())
    except ValueError as exc:
        err.print(str(exc))
        raise typer.Exit(INVALID) from None
    settings = Settings()
    # The guard's own step derives its decisions' ids: with the deployment's key, as it does.
    install_event_id_key(settings)
    codec = Codec.load()
    # The baseline as `policy publish` will see it: the policy topic, not a read model.
    in_force = read_published(settings, codec)
    baseline = in_force.version if in_force else None
    # The bar goes to stderr when stdout carries the JSON.
    with _connect(settings) as conn, progress(err if as_json else read_out) as bar:
        task = bar.add_task("recorded recommendations", total=None)
        report = run_dry_run(
            settings,
            codec,
            conn,
            loaded,
            start,
            on_total=lambda n: bar.update(task, total=n),
            advance=lambda n: bar.advance(task, n),
        )
        dry_run_id = record_dry_run(conn, report, loaded.text, by or getpass.getuser(), baseline)
    result = {"dry_run_id": dry_run_id, **report.to_json()}
    if as_json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    _print_report(result, baseline)
    out.print(f"recorded as dry-run {dry_run_id}; nothing was published")
    out.print(f"next: `casegate policy publish {path}` publishes it")


def _print_report(report: dict[str, Any], baseline: str | None) -> None:
    from rich.table import Table

    from processors.dryrun import change_lines

    out.print(
        f"dry-run of {report['candidate_version']} (sha256 {report['candidate_sha256'][:12]}) "
        f"against the decisions recorded from {report['window_start'][:19]} to "
        f"{report['window_end'][:19]} (policy in force: {baseline or 'none'})"
    )
    table = Table("workflow", "issue class", "decided", "changed", "changes", "example cases")
    for g in report["groups"]:
        table.add_row(
            g["workflow"],
            g["issue_class"],
            str(g["decisions"]),
            str(g["changed"]),
            "\n".join(change_lines(g["changes"])) or "none",
            "\n".join(", ".join(c["example_case_ids"]) for c in g["changes"]),
        )
    out.print(table)
    total = change_lines(report["changes"])
    out.print(
        f"{report['decisions']} decision(s), {report['changed']} would change"
        + (": " + "; ".join(total) if total else "")
    )


@app.command()
def reference(
    check: Annotated[
        bool, typer.Option(help="only check that the file is current (exit 1 when not)")
    ] = False,
) -> None:
    """Write docs/policy-reference.md from the policy model (every field, type, default,
    allowed values, description and an example)."""
    from policy.reference import REFERENCE_PATH, render

    text = render()
    current = REFERENCE_PATH.read_text(encoding="utf-8") if REFERENCE_PATH.exists() else None
    if check:
        if current != text:
            err.print(f"{REFERENCE_PATH} is not current; run `casegate policy reference`")
            raise typer.Exit(1)
        out.print(f"{REFERENCE_PATH} is current")
        return
    REFERENCE_PATH.write_text(text, encoding="utf-8")
    out.print(f"wrote {REFERENCE_PATH} ({'unchanged' if current == text else 'updated'})")


@app.command()
def publish(
    path: PolicyFile,
    author: Annotated[str | None, typer.Option(help="who publishes (default: your login)")] = None,
    strict: Strict = False,
    without_dry_run: Annotated[
        bool,
        typer.Option(
            "--without-dry-run",
            help="publish although no dry-run of this document was recorded "
            "(the PolicyPublished event records that it was skipped)",
        ),
    ] = False,
) -> None:
    """Publish a valid policy document; running processors use it for their next decisions."""
    from cli.readside_cmd import _connect
    from console.dryrun import dry_run_of

    loaded = _load_or_exit(path)
    settings = as_principal(Settings(), PUBLISHER)
    _warn_or_exit(path, loaded, settings, strict)
    codec = Codec.load()
    current, history = read_policies(settings, codec)
    if current is not None and current.sha256 == loaded.sha256:
        out.print(
            f"policy {loaded.version} (sha256 {loaded.sha256}) is already in force; nothing sent"
        )
        return
    refused = history.refusal(loaded.version, loaded.sha256)
    if refused is not None:
        # Processors would not take it into force: say so instead of sending it.
        err.print(f"version: {refused}")
        raise typer.Exit(INVALID)
    dry_run: str | None = None
    if current is not None:  # the first policy has no recorded decisions to try it on
        with _connect(settings) as conn:
            dry_run = dry_run_of(conn, loaded.sha256, current.version)
        if dry_run is None and not without_dry_run:
            err.print(
                f"refused: no dry-run of {path} (sha256 {loaded.sha256}) against the policy "
                f"in force ({current.version}) was recorded, so nobody has seen which "
                "decisions it changes"
            )
            err.print(
                f"next: `casegate policy dry-run {path}` (or the console's policy page), "
                "read the report, then publish again; --without-dry-run overrides, recorded"
            )
            raise typer.Exit(INVALID)
        dry_run = dry_run or "skipped"
    # getpass reads $USER (or LOGNAME…), falling back to the account name.
    event = publish_policy(settings, codec, loaded, author or getpass.getuser(), dry_run=dry_run)
    out.print(f"published policy {event.version} (sha256 {event.sha256}) by {event.author}")
    if event.dry_run:
        out.print(f"dry-run: {event.dry_run}")


@app.command()
def diff(
    old: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="policy YAML; alone, compared with the published one"
        ),
    ],
    new: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, help="policy YAML to compare OLD with"),
    ] = None,
) -> None:
    """Changes from the published policy to FILE, or from OLD to NEW."""
    if new is None:
        after = _load_or_exit(old)
        published = read_published(as_principal(Settings(), PUBLISHER), Codec.load())
        if published is None:
            out.print(f"no policy published yet; {old} would be the first ({after.version})")
            return
        before = load_policy_text(published.document)
        label = f"published {before.version} -> {old} ({after.version})"
    else:
        before, after = _load_or_exit(old), _load_or_exit(new)
        label = f"{old} ({before.version}) -> {new} ({after.version})"
    changes = diff_policies(before, after)
    out.print(label)
    for line in changes or ["no changes"]:
        out.print(f"  {line}")


def _load_or_exit(path: Path) -> LoadedPolicy:
    try:
        return load_policy_file(path)
    except PolicyInvalid as exc:
        for where, message in exc.errors:
            err.print(f"{where}: {message}")
        err.print(
            f"{path}: {len(exc.errors)} problem(s); nothing done. "
            f"Every key and its allowed values: {REFERENCE}"
        )
        raise typer.Exit(INVALID) from None


def _warn_or_exit(path: Path, loaded: LoadedPolicy, settings: Settings, strict: bool) -> None:
    """Print the settings that can never take effect here; with `strict`, refuse them."""
    found = policy_warnings(loaded.policy, settings.partitions)
    for w in found:
        err.print(f"warning: {w}")
    if found and strict:
        err.print(f"{path}: {len(found)} warning(s) and --strict; nothing done")
        raise typer.Exit(INVALID)
