"""Recommend: cases in, RecommendationProduced out (baseline or LLM), pure apart from the
bounded LLM call and the memory's background refits.

- `Memory` (processors.recommend.memory): labelled-case window and the scikit-learn model;
  feed it every `cases` and `reviews` event (`observe`), `refit()` once after the
  start-up replay, `maintain()` once per loop iteration.
- `plan_batch` then `conclude` (processors.recommend.service): one scoring call per batch;
  the LLM exchange, if any, in between.

The offline evaluation lives in `processors.recommend.evaluate` (not re-exported here,
so that the name `evaluate` keeps meaning the module).
"""

from processors.recommend.answer import Answer, Neighbor
from processors.recommend.case_view import CaseView, apply_update, open_view, text_changed
from processors.recommend.llm import Endpoint, Exchange, preload
from processors.recommend.memory import Evidence, Memory
from processors.recommend.redacted_view import ModelInput, Visibility, model_input
from processors.recommend.service import (
    BASELINE_MODEL,
    Plan,
    ask_async,
    conclude,
    plan,
    plan_batch,
    recommend,
    route,
)

__all__ = [
    "BASELINE_MODEL",
    "Answer",
    "CaseView",
    "Endpoint",
    "Evidence",
    "Exchange",
    "Memory",
    "ModelInput",
    "Neighbor",
    "Plan",
    "Visibility",
    "apply_update",
    "ask_async",
    "conclude",
    "model_input",
    "open_view",
    "plan",
    "plan_batch",
    "preload",
    "recommend",
    "route",
    "text_changed",
]
