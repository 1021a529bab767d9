"""Readings of a process from /proc (CPU seconds, status lines): one small module, so the
replay child (bench.replayer) reads them without importing the rest of the bench."""

from __future__ import annotations

import os
from pathlib import Path


def status_kb(pid: int, key: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/PID/status, in kB (None once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """utime + stime of a process on this host, in seconds: CPU cost, whatever else the
    machine runs (None if it is gone, or not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
