"""Test-side plumbing: run components as real processes, read topics, query tables, run the
console in-process."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sized
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Consumer, Message
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from console.app import create_app
from infra.db import database_urls
from infra.kafka import consumer_config, make_producer
from infra.settings import PROJECT_ROOT, Settings
from schemas.codec import Codec
from tests.stack import env_for

T = TypeVar("T")
OUTPUT = PROJECT_ROOT / "test-output"


def spawn(
    settings: Settings, module: str, name: str, log_name: str, *args: str
) -> subprocess.Popen[bytes]:
    """Start component `name` of `module` as a child process, logging to test-output/."""
    OUTPUT.mkdir(exist_ok=True)
    log = OUTPUT / f"{settings.topic_prefix}{log_name}.log"
    return subprocess.Popen(
        [sys.executable, "-m", module, name, *args],
        env=env_for(settings),
        cwd=PROJECT_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def running(settings: Settings, *modules_and_names: tuple[str, str]) -> Iterator[list[Path]]:
    """Run components (``("processors.worker", "intake")``…) as child processes."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for module, name in modules_and_names:
            procs.append(spawn(settings, module, name, name))
        yield [OUTPUT / f"{settings.topic_prefix}{name}.log" for _, name in modules_and_names]
    finally:
        stop_all(procs)


def stop_all(
    procs: Iterable[subprocess.Popen[Any]], sig: int = signal.SIGTERM, timeout_s: float = 30
) -> None:
    """Signal every process first (so that they wind down together), then wait for each;
    kill one still running after `timeout_s`."""
    procs = list(procs)
    for p in procs:
        p.send_signal(sig)
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def casegate(
    settings: Settings, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `casegate` CLI as an operator would (signed in with `token`, if given),
    against `settings`; its output is captured."""
    env = env_for(settings)
    if token is not None:
        env["CASEGATE_OPERATOR_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def eventually(
    probe: Callable[[], T | None], timeout_s: float = 60.0, what: str = "condition"
) -> T:
    """Poll until ``probe`` returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.25)


def read_topic(
    settings: Settings, name: str, expect: int, timeout_s: float = 60.0
) -> list[Message]:
    """Read a topic from the beginning until ``expect`` records arrived (or time is up)."""
    consumer = Consumer(
        consumer_config(settings, f"test-reader-{uuid.uuid4()}", **{"enable.partition.eof": False})
    )
    consumer.subscribe([settings.topic(name)])
    found: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None:
                    found.append(msg)
    finally:
        consumer.close()
    return found


def scalar(settings: Settings, query: str, *params: object) -> Any:
    """The first column of the first row `query` returns (None for no row)."""
    with psycopg.connect(database_urls(settings).app) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def rows(settings: Settings, query: str, *params: object) -> list[dict[str, Any]]:
    """Every row `query` returns, each as a dict by column name."""
    with (
        psycopg.connect(database_urls(settings).app) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        return cur.execute(query, params).fetchall()


def audited(
    settings: Settings, events: Sized, what: str = "the story in audit_log", timeout_s: float = 60.0
) -> None:
    """Wait until the read models have put every one of `events` in audit_log."""
    eventually(
        lambda: scalar(settings, "SELECT count(*) FROM audit_log") == len(events),
        timeout_s=timeout_s,
        what=what,
    )


def signed_in(app: Any, token: str) -> Any:
    """A browser (TestClient with its own cookie jar) signed in to `app` with `token`."""
    from fastapi.testclient import TestClient

    web = TestClient(app)
    answer = web.post("/sign-in", data={"token": token}, follow_redirects=False)
    if answer.status_code != 303:
        raise AssertionError(f"sign-in refused: {answer.status_code} {answer.text}")
    return web


@contextlib.contextmanager
def console_app(settings: Settings, codec: Codec | None = None, max_size: int = 4) -> Iterator[Any]:
    """The console's app in-process, over an autocommit pool (as the console runs it) and a
    producer of its own; the producer is flushed and the pool closed afterwards."""
    pool = ConnectionPool(
        database_urls(settings).app,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True},
        open=True,
    )
    producer = make_producer(settings)
    try:
        yield create_app(settings, conn_pool=pool, producer=producer, codec=codec or Codec.load())
    finally:
        producer.flush(10)
        pool.close()
