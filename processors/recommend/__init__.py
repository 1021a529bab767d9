"""Recommend: case in, RecommendationProduced out (baseline or LLM), pure apart from the
bounded LLM call. The faust agent and the CLI wire these functions; see `service`.

The offline evaluation lives in `processors.recommend.evaluate` (not re-exported here,
so that the name `evaluate` keeps meaning the module).
"""

from processors.recommend.answer import Answer, Neighbor
from processors.recommend.baseline import BaselineIndex
from processors.recommend.case_view import CaseView, apply_update, open_view, text_changed
from processors.recommend.llm import Endpoint, Exchange, preload
from processors.recommend.service import (
    BASELINE_MODEL,
    Plan,
    ask_async,
    conclude,
    plan,
    recommend,
    route,
)
from processors.recommend.visibility import ModelInput, Visibility, model_input

__all__ = [
    "BASELINE_MODEL",
    "Answer",
    "BaselineIndex",
    "CaseView",
    "Endpoint",
    "Exchange",
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
    "preload",
    "recommend",
    "route",
    "text_changed",
]
