"""`casegate demo`: the synthetic workload, written to JSONL files or published to Kafka.

Publishing sends the history part as fast as the producer takes it (its timestamps lie
in the past, ending a minute ago), waits until the broker has all of it, then sends the
live part at `--rate` events per second, each event stamped with the moment it is due.
Ctrl-C stops sending; what was produced is flushed first. Event and case ids depend only
on the seed, so publishing the same seed twice repeats them and the consumers drop the
repeats as duplicates: use another `--seed` for a fresh workload.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaError, KafkaException, Producer
from rich.console import Console

from cli.progress import progress
from demo.files import write_jsonl
from demo.workload import (
    DEMO_START,
    generate,
    history_before,
    live_from,
    release_schedule,
    split_history,
)
from infra.kafka import make_producer
from infra.kafka_auth import as_principal
from infra.settings import Settings
from infra.topics import produced_to
from schemas.codec import Codec
from schemas.events import Event, record_key, utc_now

screen = Console()
err = Console(stderr=True, soft_wrap=True)
# Events due within this long are sent together instead of sleeping for each one.
BATCH_WINDOW_S = 0.01
# Longest single wait inside librdkafka, so Ctrl-C is noticed promptly.
POLL_SLICE_S = 0.2
FLUSH_TIMEOUT_S = 30.0


def demo(
    cases: Annotated[int, typer.Option(min=1, help="number of cases to generate")] = 500,
    rate: Annotated[
        float, typer.Option(min=0.1, help="live events per second at most (Kafka only)")
    ] = 50.0,
    seed: Annotated[int, typer.Option(help="same seed, same workload")] = 7,
    history: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="fraction of cases sent first, as past history")
    ] = 0.6,
    out: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="write DIR/history.jsonl and DIR/cases.jsonl instead of publishing",
        ),
    ] = None,
) -> None:
    """A synthetic support-desk workload: past history, then a live stream (progress bar)."""
    if out is not None:
        _write_files(out, seed, cases, history)
    else:
        publish_workload(as_principal(Settings(), "upstream"), seed, cases, history, rate)


def _write_files(directory: Path, seed: int, cases: int, fraction: float) -> None:
    # Files always use the fixed realistic clock, so a seed always gives the same bytes.
    past, live = split_history(generate(seed, cases, DEMO_START, None), fraction)
    with progress(screen) as bar:
        for name, events in (("history.jsonl", past), ("cases.jsonl", live)):
            task = bar.add_task(name, total=len(events))
            write_jsonl(events, directory / name, functools.partial(bar.advance, task))
    screen.print(f"wrote {len(past)} history and {len(live)} live event(s) to {directory}")


@dataclass
class _Sender:
    """Produces events keyed by case_id to their topic and counts what the broker did."""

    producer: Producer
    codec: Codec
    settings: Settings
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def send(self, event: Event, on_ack: Callable[[], None]) -> None:
        """Queue `event`; `on_ack` runs (inside poll/flush) once the broker has it."""
        value, encoded_headers = self.codec.encode(event)
        headers: list[tuple[str, str | bytes | None]] = list(encoded_headers)
        report = functools.partial(self._delivered, on_ack)
        while True:
            try:
                self.producer.produce(
                    self.settings.topic(produced_to(event)),
                    key=record_key(event),
                    value=value,
                    headers=headers,
                    on_delivery=report,
                )
                break
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let deliveries drain first
        self.producer.poll(0)

    def wait_until(self, deadline: float) -> None:
        """Sleep until the monotonic `deadline`, serving delivery reports meanwhile."""
        while (left := deadline - time.monotonic()) > 0:
            self.producer.poll(min(left, POLL_SLICE_S))

    def _delivered(self, on_ack: Callable[[], None], error: KafkaError | None, _msg: Any) -> None:
        if error is None:
            on_ack()
        else:
            self.failed += 1
            if len(self.errors) < 3:
                self.errors.append(str(error))


def publish_workload(
    settings: Settings, seed: int, cases: int, fraction: float, rate: float
) -> None:
    """Send the history as fast as the broker takes it, then the live part at `rate`/s."""
    producer = make_producer(settings)
    try:
        producer.list_topics(timeout=10)  # fail fast instead of queueing into the void
    except KafkaException as exc:
        err.print(f"[red]error:[/] cannot reach Kafka at {settings.bootstrap_servers}: {exc}")
        err.print("[yellow]next:[/] run `casegate up` (or set KAFKA_BOOTSTRAP_SERVERS).")
        raise typer.Exit(1) from None
    sender = _Sender(producer, Codec.load(), settings)
    past = history_before(seed, cases, fraction, utc_now())
    interrupted = False
    with progress(screen) as bar:
        past_task = bar.add_task("history (past)", total=len(past))
        live_task = bar.add_task(f"live (≤ {rate:g}/s)", total=None, start=False)
        try:
            for event in past:
                sender.send(event, lambda: bar.advance(past_task))
            # History is in place before the first live event, and live time starts now.
            _flush(producer)
            live = live_from(seed, cases, fraction, utc_now(), rate)
            bar.update(live_task, total=len(live))
            bar.start_task(live_task)
            started = time.monotonic()
            for event, due in zip(live, release_schedule(live, rate), strict=True):
                if started + due - time.monotonic() > BATCH_WINDOW_S:
                    sender.wait_until(started + due)
                sender.send(event, lambda: bar.advance(live_task))
        except KeyboardInterrupt:
            interrupted = True
        try:
            left = _flush(producer)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for the broker
            left = len(producer)
    sent = int(sum(t.completed for t in bar.tasks))
    if interrupted:
        screen.print(f"[yellow]stopped[/] after {sent} acknowledged event(s); the rest not sent.")
    else:
        screen.print(f"published {sent} event(s): seed {seed}, {cases} case(s).")
    if left or sender.failed:
        for message in sender.errors:
            err.print(f"[red]delivery failed:[/] {message}")
        err.print(f"[red]error:[/] {sender.failed} failed and {left} unconfirmed record(s).")
        raise typer.Exit(1)
    if interrupted:
        raise typer.Exit(130)


def _flush(producer: Producer) -> int:
    """Wait (up to FLUSH_TIMEOUT_S) for every queued record; how many are still unsent."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    left = producer.flush(POLL_SLICE_S)
    # Short slices so that a Ctrl-C while waiting is noticed at once.
    while left and time.monotonic() < deadline:
        left = producer.flush(POLL_SLICE_S)
    return left
