"""The Jinja2 environment of the pages: autoescaping on for every template, so case text
(subjects, descriptions, rationales) is always shown as text, never run as markup."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from starlette.responses import Response

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


def when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def minutes(value: float | None) -> str:
    return "—" if value is None else f"{value / 60:.1f} min"


def count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def trace_url(case_id: str) -> str:
    return f"/cases/{quote(case_id, safe='')}"


def review_url(recommendation_id: str) -> str:
    return f"/queue/{quote(recommendation_id, safe='')}"


def build_templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its extension
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, pct=pct, minutes=minutes, number=count, pretty=pretty)
    env.globals.update(trace_url=trace_url, review_url=review_url)
    return Jinja2Templates(env=env)


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)
