"""Adapters run catalog actions downstream, one module per `adapter.kind` of the catalog.

Adding one: a module with a class that has `async def run(call) -> AdapterResult`
(`base.Adapter`), a line in `build_adapters`, and its kind in `policy.catalog.AdapterSpec`.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from processors.adapters.base import Adapter, AdapterCall, run_with_timeout
from processors.adapters.http import HttpAdapter
from processors.adapters.log import LogAdapter

__all__ = ["Adapter", "AdapterCall", "build_adapters", "run_with_timeout"]


def build_adapters(http_session: Callable[[], aiohttp.ClientSession]) -> dict[str, Adapter]:
    """Every adapter by kind; `http_session` gives the app's shared HTTP session."""
    return {"http": HttpAdapter(http_session), "log": LogAdapter()}
