"""Runs casegate's components as child processes, restarts the ones that crash, and stops
them all cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from processors.worker import PROCESSORS
from projections.worker import PROJECTIONS

COMPONENTS: dict[str, list[str]] = {
    **{name: ["-m", "processors.worker", name] for name in PROCESSORS},
    **{name: ["-m", "projections.worker", name] for name in PROJECTIONS},
    "console": ["-m", "cli.serve"],
}


@dataclass
class Child:
    name: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)


def log_folder(home: Path, topic_prefix: str) -> Path:
    """Component logs of one deployment: one folder per topic prefix, so two stacks on one
    home never write into each other's files (`casegate.` -> logs/casegate)."""
    return home / "logs" / (topic_prefix.strip(".") or "_")


def rotate(log: Path, max_bytes: int, backups: int) -> bool:
    """Keep `log` under `max_bytes`: past it, copy it to `.1` (older ones shift up to
    `backups`) and truncate it in place. In place, because the child keeps writing to the
    same file (opened O_APPEND, so its next line lands at the new end); returns whether it
    rotated."""
    if max_bytes <= 0 or not log.exists() or log.stat().st_size <= max_bytes:
        return False
    for n in range(backups - 1, 0, -1):
        older = log.with_name(f"{log.name}.{n}")
        if older.exists():
            older.replace(log.with_name(f"{log.name}.{n + 1}"))
    if backups > 0:
        shutil.copyfile(log, log.with_name(f"{log.name}.1"))
    with log.open("r+b") as fh:
        fh.truncate(0)
    return True


class Supervisor:
    def __init__(
        self,
        components: list[str],
        log_dir: Path,
        report: Callable[[str], None],
        max_restarts: int = 5,
        log_max_bytes: int = 0,
        log_backups: int = 0,
    ) -> None:
        unknown = [c for c in components if c not in COMPONENTS]
        if unknown:
            raise ValueError(
                f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(COMPONENTS)}"
            )
        log_dir.mkdir(parents=True, exist_ok=True)
        self.children = [Child(c, log_dir / f"{c}.log") for c in components]
        self.report = report
        self.max_restarts = max_restarts
        self.log_max_bytes, self.log_backups = log_max_bytes, log_backups
        self.stopping = False

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)
            self.report(
                f"started {child.name} (pid {child.proc.pid if child.proc else '?'}); "
                f"log: {child.log}"
            )

    def _spawn(self, child: Child) -> None:
        # Appended, never truncated: a restart keeps the crash it follows.
        rotate(child.log, self.log_max_bytes, self.log_backups)
        out = child.log.open("ab")
        child.proc = subprocess.Popen(
            [sys.executable, *COMPONENTS[child.name]],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        child.started_at = time.monotonic()

    def check(self) -> None:
        """Restart a child that died on its own (with a growing pause between tries)."""
        for child in self.children:
            rotate(child.log, self.log_max_bytes, self.log_backups)
            if child.proc is None or child.proc.poll() is None or self.stopping:
                continue
            code = child.proc.returncode
            if child.restarts >= self.max_restarts:
                raise RuntimeError(
                    f"{child.name} crashed {child.restarts + 1} times "
                    f"(exit {code}); see {child.log}"
                )
            child.restarts += 1
            self.report(
                f"{child.name} exited with {code}; restarting "
                f"({child.restarts}/{self.max_restarts}); see {child.log}"
            )
            time.sleep(min(2**child.restarts, 30))
            self._spawn(child)

    def stop(self, grace_s: float = 30.0) -> None:
        self.stopping = True
        for child in self.children:
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            self.report(f"stopped {child.name}")

    def run_until_signal(self) -> None:
        """Watch the children until SIGINT or SIGTERM."""
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            while not stop:
                self.check()
                time.sleep(0.5)
        finally:
            self.stop()
