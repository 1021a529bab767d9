"""Test-side plumbing: run components as real processes, read topics, query tables."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, Message

from infra.kafka import consumer_config
from infra.settings import PROJECT_ROOT, Settings
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
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


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


def signed_in(app: Any, token: str) -> Any:
    """A browser (TestClient with its own cookie jar) signed in to `app` with `token`."""
    from fastapi.testclient import TestClient

    web = TestClient(app)
    answer = web.post("/sign-in", data={"token": token}, follow_redirects=False)
    if answer.status_code != 303:
        raise AssertionError(f"sign-in refused: {answer.status_code} {answer.text}")
    return web
