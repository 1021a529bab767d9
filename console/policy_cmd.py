"""`casegate policy validate|publish|diff`: check, publish and compare policy documents.

Errors are printed one per line as `path: message` (the dotted path in the document) and
the command exits with 2. Publishing sends one PolicyPublished, keyed by its version, to the
one-partition `policy` topic (kept forever), where running processors pick it up.
"""

from __future__ import annotations

import getpass
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import Consumer, KafkaException, TopicPartition
from rich.console import Console

from console.produce import send_acknowledged
from infra.acl import PUBLISHER
from infra.kafka import consumer_config
from infra.kafka_auth import as_principal
from infra.settings import Settings
from policy.loader import (
    LoadedPolicy,
    PolicyHistory,
    PolicyInvalid,
    diff_policies,
    load_policy_file,
    load_policy_text,
    policy_key,
)
from policy.semantics import policy_warnings
from policy.shape import REFERENCE
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.events import PolicyPublished, new_event_id, utc_now

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
) -> None:
    """Publish a valid policy document; running processors use it for their next decisions."""
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
    # getpass reads $USER (or LOGNAME…), falling back to the account name.
    event = publish_policy(settings, codec, loaded, author or getpass.getuser())
    out.print(f"published policy {event.version} (sha256 {event.sha256}) by {event.author}")


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


def publish_policy(
    settings: Settings, codec: Codec, loaded: LoadedPolicy, author: str
) -> PolicyPublished:
    """Send `loaded` as a PolicyPublished and wait until the broker has it."""
    event = PolicyPublished(
        # A fresh id: publishing an earlier document again (a rollback) is a new event.
        event_id=new_event_id(),
        case_id="policy",
        occurred_at=utc_now(),
        version=loaded.version,
        sha256=loaded.sha256,
        author=author,
        document=loaded.text,
    )
    send_acknowledged(settings, codec, event, policy_key(loaded.version))
    return event


def read_published(
    settings: Settings, codec: Codec, timeout_s: float = 15.0
) -> PolicyPublished | None:
    """The policy in force: the last PolicyPublished on the `policy` topic whose version
    was new when published, or None."""
    return read_policies(settings, codec, timeout_s)[0]


def read_policies(
    settings: Settings, codec: Codec, timeout_s: float = 15.0
) -> tuple[PolicyPublished | None, PolicyHistory]:
    """The policy in force and every version published so far."""
    tp = TopicPartition(settings.topic("policy"), 0)
    # A throwaway group that never commits: reading the policy leaves no trace.
    consumer = Consumer(
        consumer_config(settings, f"{settings.topic_prefix}policy-cli-{uuid.uuid4()}")
    )
    try:
        _low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        history = PolicyHistory()
        if high <= 0:
            return None, history
        consumer.assign([TopicPartition(tp.topic, 0, 0)])
        latest: PolicyPublished | None = None
        deadline = time.monotonic() + timeout_s
        while consumer.position([tp])[0].offset < high:
            if time.monotonic() > deadline:
                raise KafkaException(f"{tp.topic}: not read to offset {high} within {timeout_s:g}s")
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            # The processors' rule (PolicyHistory.admit); what they dead-letter, the
            # console skips, and the one before stays in force.
            try:
                event = codec.decode(msg.value(), msg.headers())
                if isinstance(event, PolicyPublished):
                    history.admit(msg.key(), event)
                    latest = event
            except (CodecError, PolicyInvalid):
                continue
        return latest, history
    finally:
        consumer.close()


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
