"""The recommender's cost: CPU per case of batched planning, fit time and memory, at several
history sizes. ``python -m bench.recommender [SIZE ...] [--batch N]``.

Per size, in a process of its own (spawned, so its memory is the recommender's alone): the
demo workload (`demo.workload.generate`, seed 7) supplies the history, `Memory.replay` and
`Memory.refit()` (blocking, in that process) learn and fit it, and batches of `batch` new
cases (another seed, so none is in the history) go through `plan_batch` under the default
policy, exactly as the processor calls it. Figures, per size label ("20k"):

- ``recommender.cpu_ms_per_case.<n>``: process CPU time of `plan_batch` per case, all
  threads included, median over the measured batches (after one warm-up batch);
- ``recommender.fit_s.<n>``: wall seconds of the blocking `refit()`, which fits in the
  memory's child process as the processor's start-up does (its CPU is the child's);
- ``recommender.rss_mb.<n>``: resident memory of the measuring process once it holds the
  memory and the fitted model;
- ``recommender.peak_rss_mb.<n>``: its peak resident memory (the fit itself happens in
  the child, whose memory is not counted here);
- ``recommender.fit_peak_rss_mb.<n>``: the fitting child's peak resident memory;
- ``recommender.redact_s.1mb``: wall seconds the default policy's redaction takes over
  1 MB of the most expensive of the hostile texts (`HOSTILE_TEXT`), best of three.

BLAS runs on one thread (the scoring's matrix products are too small to gain from more,
and spinning helper threads only add CPU time): set before numpy loads, in the child.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from multiprocessing import get_context
from multiprocessing.connection import Connection

HISTORY_SEED = 7
CASES_SEED = 8
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
MEASURED_BATCHES = 10

# Text shaped to make redaction patterns backtrack: long runs of address characters that
# never complete an address, digits and separators (n characters each, about).
HOSTILE_TEXT: dict[str, Callable[[int], str]] = {
    "a": lambda n: "a" * n,
    "a@": lambda n: "a@" * (n // 2),
    "a.": lambda n: "a." * (n // 2),
    "a@ then a.": lambda n: "a@" + "a." * (n // 2),
    "no tld": lambda n: ("x" * 60 + "@" + "y" * 60 + ".") * (n // 122),
    "one-letter tlds": lambda n: ("@" + "a.b" * 40) * (n // 121),
    "digits": lambda n: "1" * n,
    "digit separators": lambda n: "1 (" * (n // 3),
    "addresses": lambda n: "ab.cd@ef.gh " * (n // 12),
}


def label(size: int) -> str:
    """5000 -> "5k", 1500 -> "1.5k"."""
    return f"{size / 1000:g}k"


def measure(sizes: Sequence[int] = (5_000, 20_000, 50_000), batch: int = 200) -> dict[str, float]:
    """Figure name -> value for every size (see the module docstring)."""
    figures: dict[str, float] = {"recommender.redact_s.1mb": redaction_s(1_000_000)}
    context = get_context("spawn")
    for size in sizes:
        receive, send = context.Pipe(duplex=False)
        # Not a Pool: its workers are daemons, and the memory spawns its own fitter child.
        child = context.Process(target=_measure_one, args=(size, batch, send))
        child.start()
        send.close()
        try:
            figures.update(receive.recv())
        except EOFError:
            raise RuntimeError(f"the measuring process for {size} cases died") from None
        finally:
            child.join()
    return figures


def redaction_s(size: int) -> float:
    """Seconds the default policy's redaction takes on the worst of the hostile texts."""
    from policy.loader import default_policy_path, load_policy_file
    from processors.recommend.redacted_view import Visibility

    redact = Visibility.from_policy(
        load_policy_file(default_policy_path()).policy.model_visibility
    ).redact
    worst = 0.0
    for make in HOSTILE_TEXT.values():
        text = make(size)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            redact(text)
            best = min(best, time.perf_counter() - started)
        worst = max(worst, best)
    return worst


def _measure_one(size: int, batch: int, send: Connection) -> None:
    """In the spawned child: build, fit and time one history size; send the figures."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    from demo.workload import generate
    from policy.loader import default_policy_path, load_policy_file
    from processors.recommend.case_view import open_view
    from processors.recommend.memory import Memory, freeze_heap
    from processors.recommend.redacted_view import Visibility
    from processors.recommend.service import plan_batch
    from schemas.events import CaseOpened

    threadpool_limits(1)
    policy = load_policy_file(default_policy_path())
    memory = Memory(Visibility.from_policy(policy.policy.model_visibility), max_cases=size)
    # A few cases stay unresolved: generate a little more, and the window keeps `size`.
    memory.replay(generate(HISTORY_SEED, size + size // 10, START, None))
    started = time.perf_counter()
    memory.refit()
    fit_s = time.perf_counter() - started
    freeze_heap()  # as the recommend processor does after its start-up replay and fit
    wanted = batch * (MEASURED_BATCHES + 1)
    cases = [
        open_view(e)
        for e in generate(CASES_SEED, wanted * 2, START, None)
        if isinstance(e, CaseOpened)
    ][:wanted]
    gc.collect()
    rss = _status_mb("VmRSS")
    per_case = []
    for start in range(0, len(cases), batch):
        chunk = cases[start : start + batch]
        began = time.process_time()
        plan_batch(chunk, policy, memory)
        per_case.append((time.process_time() - began) * 1000 / len(chunk))
    memory.close()  # stops the fitting child, so its peak memory is known
    name = label(size)
    send.send(
        {
            f"recommender.cpu_ms_per_case.{name}": round(statistics.median(per_case[1:]), 4),
            f"recommender.fit_s.{name}": round(fit_s, 2),
            f"recommender.rss_mb.{name}": round(rss, 1),
            f"recommender.peak_rss_mb.{name}": round(_status_mb("VmHWM"), 1),
            f"recommender.fit_peak_rss_mb.{name}": round(_children_peak_mb(), 1),
        }
    )


def _children_peak_mb() -> float:
    """Peak resident memory of the largest finished child (the fitting process), in MB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[5_000, 20_000, 50_000])
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args(argv)
    json.dump(measure(args.sizes, args.batch), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
