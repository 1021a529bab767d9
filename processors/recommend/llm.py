"""One bounded LLM exchange through litellm: timeout per attempt, bounded retries.

litellm is imported on first use, never at module import: the import takes seconds and
would otherwise try to download a cost map, so start-up must not depend on it. Every
failure ends as an `Exchange` with a fallback reason instead of an exception: the caller
then lets the baseline answer and records why. Nothing here reads the environment
except litellm's own cost-map switch, which must be set before litellm is imported.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from policy.model import LlmRecommender

log = logging.getLogger(__name__)

BACKOFF_S = 0.2  # first retry delay; doubled per attempt, bounded by MAX_BACKOFF_S
MAX_BACKOFF_S = 2.0
LLM_TIMEOUT = "llm_timeout"
LLM_ERROR = "llm_error"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the model is served and the key for it; None lets litellm use its default."""

    api_base: str | None = None
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one bounded exchange produced: raw text, or the reason there is none."""

    raw: str | None
    failure: str | None  # "<code>: <detail>" when no answer came back
    attempts: int
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None


@functools.cache
def _litellm() -> ModuleType:
    # The local cost map keeps the import offline; setdefault lets an operator override.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # its banners would go to stdout on every error
    return litellm


# litellm is the optional extra `casegate[llm]`: without it, LLM workflows answer with
# the baseline, each exchange saying why.
NOT_INSTALLED = "litellm is not installed (pip install 'casegate[llm]')"


def preload() -> None:
    """Import litellm now. It takes seconds: call it off the event loop at start-up
    (`await asyncio.to_thread(preload)`) so the first LLM case does not stall a worker."""
    try:
        _litellm()
    except ImportError:
        log.warning("%s: LLM workflows will be answered by the baseline", NOT_INSTALLED)


def _not_installed(started: float) -> Exchange:
    latency = round((time.perf_counter() - started) * 1000, 3)
    return Exchange(
        raw=None, failure=f"{LLM_ERROR}: {NOT_INSTALLED}", attempts=0, latency_ms=latency
    )


def _arguments(
    cfg: LlmRecommender, messages: list[dict[str, str]], endpoint: Endpoint
) -> dict[str, Any]:
    return {
        "model": cfg.model,
        "messages": messages,
        "temperature": cfg.temperature,
        "timeout": cfg.timeout_s,
        # Retries are ours (counted, bounded, logged); the SDK's own would multiply them.
        "max_retries": 0,
        "response_format": {"type": "json_object"},
        "drop_params": True,  # providers without JSON mode still get the request
        "api_base": endpoint.api_base,
        "api_key": endpoint.api_key,
    }


def _retriable(exc: Exception) -> bool:
    """Timeouts, connection trouble, rate limits and 5xx may pass; the rest will not."""
    lib = _litellm()
    kinds = (
        lib.Timeout,
        lib.APIConnectionError,
        lib.RateLimitError,
        lib.ServiceUnavailableError,
        lib.InternalServerError,
    )
    return isinstance(exc, kinds)


def _failure(exc: Exception, attempts: int) -> str:
    code = LLM_TIMEOUT if isinstance(exc, _litellm().Timeout) else LLM_ERROR
    return f"{code}: {type(exc).__name__} after {attempts} attempt(s): {str(exc)[:200]}"


def _backoff(attempt: int) -> float:
    return float(min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (attempt - 1)))


def _retry_in(cfg: LlmRecommender, attempt: int, exc: Exception) -> float | None:
    """Seconds to wait before the next attempt after `exc` failed attempt `attempt`, or
    None to give up (logged): the rule `complete` and `acomplete` both follow."""
    if attempt > cfg.max_retries or not _retriable(exc):
        log.warning("llm %s gave up after %d attempt(s): %r", cfg.model, attempt, exc)
        return None
    return _backoff(attempt)


def _answered(response: Any, attempts: int, started: float) -> Exchange:
    latency = (time.perf_counter() - started) * 1000
    usage = getattr(response, "usage", None)
    try:
        cost: float | None = float(_litellm().completion_cost(completion_response=response))
    except Exception:  # a model missing from the local cost map has no price: not an error
        cost = None
    content = response.choices[0].message.content if response.choices else None
    return Exchange(
        raw=content if isinstance(content, str) else "",
        failure=None,
        attempts=attempts,
        latency_ms=round(latency, 3),
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        cost_usd=cost,
    )


def _failed(exc: Exception, attempts: int, started: float) -> Exchange:
    latency = round((time.perf_counter() - started) * 1000, 3)
    return Exchange(
        raw=None, failure=_failure(exc, attempts), attempts=attempts, latency_ms=latency
    )


def complete(cfg: LlmRecommender, messages: list[dict[str, str]], endpoint: Endpoint) -> Exchange:
    """Rule: at most 1 + max_retries attempts of at most timeout_s each, never raising."""
    started = time.perf_counter()
    try:
        lib = _litellm()
    except ImportError:
        return _not_installed(started)
    attempt = 0
    while True:
        attempt += 1
        try:
            response = lib.completion(**_arguments(cfg, messages, endpoint))
        except Exception as exc:  # any failure of the remote side means: baseline answers
            wait = _retry_in(cfg, attempt, exc)
            if wait is None:
                return _failed(exc, attempt, started)
            time.sleep(wait)
            continue
        return _answered(response, attempt, started)


async def acomplete(
    cfg: LlmRecommender, messages: list[dict[str, str]], endpoint: Endpoint
) -> Exchange:
    """`complete` for async callers (faust agents): same bounds, no blocking calls."""
    started = time.perf_counter()
    try:
        lib = _litellm()
    except ImportError:
        return _not_installed(started)
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await lib.acompletion(**_arguments(cfg, messages, endpoint))
        except Exception as exc:  # any failure of the remote side means: baseline answers
            wait = _retry_in(cfg, attempt, exc)
            if wait is None:
                return _failed(exc, attempt, started)
            await asyncio.sleep(wait)
            continue
        return _answered(response, attempt, started)
