"""A real browser (the OS's Chromium, driven by Playwright) against the whole system.

Playwright cannot download its own browser here: it drives the ``chromium`` on PATH
(Debian: ``apt-get install chromium``; ``./dev test`` installs it when it can). Without one,
every test in this folder is skipped with a message saying so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

from chatbus_dev.nats_server import start_nats
from tests.e2e.conftest import Stack, run_stack

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed: uv sync (dev group)"
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox",  # root in a container: no user namespaces for the sandbox
    "--disable-background-networking",  # no update checks, no component downloads
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--metrics-recording-only",
]
# Generous bounds: a busy 2-core machine runs eight suites at once.
TIMEOUT_MS = 20_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM is None:
        skip = pytest.mark.skip(
            reason="no chromium on PATH: install it (apt-get install chromium) to run browser tests"
        )
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(skip)


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[playwright_api.Browser]:
    async with playwright_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture(scope="session")
def own_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS server for the browser tests' system alone: it lives for the whole session, and
    its agents must not answer the e2e tests' requests in the same queue groups."""
    server = start_nats(tmp_path_factory.mktemp("web-nats"))
    yield server.url
    server.stop()


@pytest_asyncio.fixture(scope="session")
async def web_stack(
    tmp_path_factory: pytest.TempPathFactory, own_bus: str, redis_url: str
) -> AsyncIterator[Stack]:
    """One system for every browser test (starting one takes most of the suite's time), on
    its own bus and its own Redis database (no cached reply or key is shared with others)."""
    parts = urlsplit(redis_url)
    redis_db = urlunsplit(parts._replace(path="/7"))
    async with run_stack(tmp_path_factory.mktemp("web"), own_bus, redis_db) as s:
        s.llm.intents = True  # as `chatbus up` runs it: handoffs and tools without an API key
        yield s


@dataclass
class Watched:
    """A page, and what went wrong on it: failed requests and console errors."""

    page: playwright_api.Page
    bad_responses: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest_asyncio.fixture
async def watched(browser: playwright_api.Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    w = Watched(page)
    page.on(
        "response",
        lambda r: w.bad_responses.append(f"{r.status} {r.url}") if r.status == 404 else None,
    )
    page.on("console", lambda m: w.console_errors.append(m.text) if m.type == "error" else None)
    try:
        yield w
    finally:
        await context.close()


async def screenshot(page: playwright_api.Page, name: str) -> None:
    """With ``CHATBUS_SCREENSHOTS=<dir>``, save what the page shows as ``<dir>/<name>.png``."""
    folder = os.environ.get("CHATBUS_SCREENSHOTS")
    if folder:  # playwright creates the folder
        await page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)
