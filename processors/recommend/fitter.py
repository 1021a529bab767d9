"""The recommender's fitting process: `python -m processors.recommend.fitter`, started by
`memory._Child`. It reads pickled requests (examples file, model folder, seed) from stdin,
fits (`fitting.fit`) at a lower CPU priority (nice 10), writes the model folder, and
answers ("ok", version) or ("error", traceback) on stdout, until stdin closes. A module
of its own, imported by nothing, so that running it does not import it twice.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from pathlib import Path

from processors.recommend.fitting import Example, fit


def fit_in_child(examples: Path, model_dir: Path, seed: int) -> str:
    """The background refit, run in the child process: examples in, model files out."""
    loaded: list[Example] = []
    with examples.open("rb") as source:
        while True:
            try:
                loaded.extend(pickle.load(source))
            except EOFError:
                break
    model = fit(loaded, seed=seed)
    model.save(model_dir)
    return model.version


def _serve() -> None:
    """The child's loop: read a request, fit, answer; until its stdin closes."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed goes to the log, never into the answers
    # A refit is background work: the processor that started it comes first for the CPU.
    os.nice(10)
    while True:
        try:
            examples, model_dir, seed = pickle.load(requests)
        except EOFError:
            return
        try:
            answer: tuple[str, str] = ("ok", fit_in_child(Path(examples), Path(model_dir), seed))
        except Exception:
            answer = ("error", traceback.format_exc(limit=5))
        pickle.dump(answer, answers)
        answers.flush()


if __name__ == "__main__":
    _serve()
