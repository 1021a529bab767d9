"""Child processes under measurement: started with a sandbox's environment, their memory
sampled from /proc, and always stopped (SIGTERM, then SIGKILL) — even when the bench fails."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.proc_stats import cpu_s, status_kb
from infra.sandbox import child_env
from infra.settings import PROJECT_ROOT, Settings
from processors.worker import PROCESSORS

LOGS = PROJECT_ROOT / "results" / "logs"

# What each component runs as (one process each, as in production).
COMMANDS: dict[str, list[str]] = {
    **{name: ["-m", "processors.worker", name] for name in PROCESSORS},
    "readmodels": ["-m", "projections.worker", "readmodels"],
    **{f"plain-{name}": ["-m", "bench.plain", name] for name in PROCESSORS},
    "replay": ["-m", "bench.replayer"],
}


def command(name: str) -> list[str]:
    """Arguments after the interpreter: a component, or ``NAME#N`` for instance N of a
    processor (a second worker in its consumer group)."""
    head, _, instance = name.partition("#")
    if head not in COMMANDS:
        raise ValueError(f"unknown bench component {name!r}")
    return [*COMMANDS[head], "--instance", instance] if instance else COMMANDS[head]


@dataclass
class Child:
    """One running component; ``rss`` collects (seconds since start, VmRSS kB) samples."""

    name: str
    proc: subprocess.Popen[bytes]
    started: float
    rss: list[tuple[float, int]] = field(default_factory=list)
    hwm_kb: int = 0
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (seconds, CPU seconds)

    def sample(self) -> None:
        rss = status_kb(self.proc.pid, "VmRSS")
        hwm = status_kb(self.proc.pid, "VmHWM")
        if rss is not None:
            self.rss.append((time.monotonic() - self.started, rss))
        if hwm is not None:
            self.hwm_kb = max(self.hwm_kb, hwm)
        cpu = cpu_s(self.proc.pid)
        if cpu is not None:
            self.cpu.append((time.monotonic() - self.started, cpu))

    def cpu_between(self, start_s: float, end_s: float) -> float:
        """CPU seconds spent between two moments (seconds since start), from the samples."""
        before = [c for t, c in self.cpu if t <= start_s]
        until = [c for t, c in self.cpu if t <= end_s]
        return (until[-1] if until else 0.0) - (before[-1] if before else 0.0)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}; see {LOGS}/ for its log"
            )

    def terminate(self) -> None:
        """Ask for a clean stop (SIGTERM), reading VmHWM one last time before it is lost."""
        if self.proc.poll() is None:
            self.sample()
            self.proc.send_signal(signal.SIGTERM)

    def wait_or_kill(self, grace_s: float = 15.0) -> None:
        """Wait up to ``grace_s`` for the clean stop, then SIGKILL: it always ends."""
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start(settings: Settings, name: str, env: dict[str, str] | None = None) -> Child:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{settings.topic_prefix}{name.replace('#', '-')}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, *command(name)],
        env={**child_env(settings), "CASEGATE_LOG_LEVEL": "WARNING", **(env or {})},
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()  # the child holds its own descriptor
    return Child(name, proc, time.monotonic())


class Sampler:
    """Samples every child's memory in the background, every ``interval_s``."""

    def __init__(self, children: list[Child], interval_s: float = 0.5) -> None:
        self.children = children
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for child in self.children:
                child.sample()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def running(
    settings: Settings, *names: str, env: dict[str, str] | None = None
) -> Iterator[list[Child]]:
    """Start the named components; stop every one of them on the way out, whatever happens."""
    children: list[Child] = []
    try:
        for name in names:
            children.append(start(settings, name, env))
        yield children
    finally:
        # All at once: each clean stop takes a few seconds, and they do not depend on
        # one another.
        for child in children:
            with contextlib.suppress(Exception):
                child.terminate()
        for child in children:
            with contextlib.suppress(Exception):
                child.wait_or_kill()
        for child in children:  # belt and braces: nothing outlives the bench
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait(10)
