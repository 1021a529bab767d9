"""The console in a real browser (Playwright driving the OS's Chromium) against the running
stack: `python -m cli.serve` and the read-model process as child processes.

Chromium comes from the OS (infra/system-deps.sh installs it): Playwright's own browser
download is never used. A missing browser fails these tests; it never skips them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from infra.db import database_urls
from infra.settings import PROJECT_ROOT, Settings
from tests.integration import console_story
from tests.integration.console_story import HOSTILE
from tests.integration.helpers import OUTPUT, eventually, running, stop_all
from tests.stack import Stack, env_for

SCREENSHOTS = OUTPUT / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Site:
    url: str
    tokens: dict[str, str]
    log: Path


def chromium() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail(
            "Chromium is not installed: run `make setup` (infra/system-deps.sh installs the "
            "OS package `chromium`); Playwright's own browser download is not used."
        )
    return found


@pytest.fixture(scope="module")
def site(stack: Stack) -> Iterator[Site]:
    settings = stack.isolated()
    story = console_story.story()
    console_story.publish(settings, story.events)
    port = console_story.free_port()
    log = OUTPUT / f"{settings.topic_prefix}console.log"
    with running(settings, ("projections.worker", "readmodels")):
        eventually(lambda: audit_rows(settings) == len(story.events), 60, "the story in audit_log")
        tokens = console_story.add_operators(settings)
        with serving(settings, port, log):
            url = f"http://127.0.0.1:{port}"
            eventually(lambda: answers(f"{url}/api/health"), 30, "the console to answer")
            yield Site(url, tokens, log)
    # Tokens are never logged, not even by the server's access log.
    assert all(t not in log.read_text() for t in tokens.values())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def audit_rows(settings: Settings) -> int:
    with psycopg.connect(database_urls(settings).app) as conn:
        row = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    return int(row[0]) if row else 0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class serving:
    """The console as its own process, exactly as `casegate run console` starts it."""

    def __init__(self, settings: Settings, port: int, log: Path) -> None:
        self.env = {**env_for(settings), "CASEGATE_CONSOLE_PORT": str(port)}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> subprocess.Popen[bytes]:
        self.log.parent.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.serve"],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        return self.proc

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            stop_all((self.proc,), timeout_s=20)


def signed_in(browser: Browser, site: Site, operator: str) -> Page:
    page = browser.new_context(base_url=site.url).new_page()
    page.goto("/sign-in")
    page.fill("#token", site.tokens[operator])
    page.click("button[type=submit]")
    page.wait_for_url("**/queue")
    return page


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_sign_in_review_and_approve_then_see_it_in_the_trace(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, "sam")
    expect(page.locator("#operator")).to_have_text("sam")
    item = page.locator("#item-r-q1")
    # The queue shows what, why and what happens, with the case text as text.
    expect(item).to_contain_text(f"Double charge {HOSTILE} on order ORD-17")
    expect(item.locator(".recommended")).to_contain_text("refund_payment(amount=50.0")
    expect(item.locator(".why")).to_contain_text("4 of 5 similar cases were double_charge")
    expect(item.locator(".consequences")).to_contain_text("refund issued")
    shot(page, "queue")

    item.get_by_role("link", name="Review").click()
    page.wait_for_url("**/queue/r-q1")
    expect(page.locator("#recommended")).to_contain_text('order_id="ORD-17"')
    expect(page.locator("#why")).to_contain_text("Confidence: 87%")
    expect(page.locator("#why a[href='/cases/h1']")).to_have_text("h1")
    consequences = page.locator("#consequences")
    expect(consequences).to_contain_text("refund issued to the original payment method")
    expect(consequences).to_contain_text("Not reversible")
    expect(consequences).to_contain_text("high risk")
    expect(consequences).to_contain_text("0 of 2 approval(s) given")
    expect(consequences).to_contain_text("Expires:")
    assert page.locator("script:not([src])").count() == 0  # hostile text stayed text
    # Choosing an override action lays out its parameters to fill in.
    page.select_option("#override-action", "change_plan")
    expect(page.locator("#override-params")).to_have_value('{\n "plan": null\n}')
    shot(page, "review")

    page.fill("#approve-reason", "matches the duplicate capture")
    page.click("#approve-form button[type=submit]")
    page.wait_for_url("**/cases/q1?submitted=*")
    expect(page.locator(".notice").first).to_contain_text("was submitted")

    def review_shown() -> bool:
        page.reload()
        return page.locator("tr.event-ReviewSubmitted").count() == 1

    eventually(review_shown, 30, "the review on the trace page")
    expect(page.locator("tr.event-ReviewSubmitted")).to_contain_text(
        "review submitted by sam: approve"
    )
    shot(page, "trace")


def test_an_operator_without_the_role_does_not_see_the_item(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, "ann")
    expect(page.locator("#item-r-q3")).to_be_visible()
    expect(page.locator("#item-r-q1")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("Double charge")
    shot(page, "queue-agent")
    page.goto("/queue/r-q1")
    expect(page.locator(".error")).to_contain_text("needs one of supervisor, finance_lead")


def test_the_metrics_page_renders_its_charts(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, "fay")
    page.goto("/metrics?metric=recommendations&by=queue")
    series = page.locator("svg.line-chart")
    expect(series).to_have_count(1)
    # Recommendations fell on three past days and today.
    expect(series.locator("circle.dot")).to_have_count(4)
    bars = page.locator("svg.bar-chart rect.bar")
    expect(bars).to_have_count(3)  # billing, identity, shipping
    expect(page.locator("svg.bar-chart")).to_contain_text("billing")
    expect(page.locator("table.readiness")).to_contain_text("error rate outside the threshold")
    shot(page, "metrics")
    page.goto("/attention")
    expect(page.locator("main")).to_contain_text("billing system did not answer")
    expect(page.locator("main")).to_contain_text("action_prohibited")
    shot(page, "attention")
