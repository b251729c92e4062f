"""``chatbus up --traces``: one chat message is one trace in a real viewer (Arize Phoenix),
with a span from every service it crosses, found and opened in a browser.

Slow (Phoenix takes up to a minute or two to start on a busy machine) and skipped when
Phoenix is not installed: ``uv tool install arize-phoenix`` (``./dev up --traces`` installs it).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from chatbus_dev.servers import ServerProcess, free_port
from chatbus_dev.trace_viewer import installed_phoenix, start_viewer, trace_url
from tests.browser.conftest import Watched, playwright_api, screenshot
from tests.e2e.conftest import Stack, run_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        installed_phoenix() is None,
        reason="Phoenix is not installed (uv tool install arize-phoenix): viewer test skipped",
    ),
]

# one span from each service the message crosses (names as tests/e2e/test_traces.py knows them)
WANTED = {
    "POST /api/chat/{agent_id}": "gateway",
    "handle chat.request.v1.support": "agent-support",
    "consume memory.turns.v1": "memory",  # it stores the turn (it is searched only later on)
    "handle cost.authorize.v1": "cost",
    "consume cost.usage.recorded.v1": "cost",
}


@pytest_asyncio.fixture(scope="module")
async def viewer(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("phoenix")
    started = await asyncio.to_thread(
        start_viewer, tmp, tmp / "phoenix.log", free_port(), free_port(), 600.0
    )
    yield started
    started.stop()


@pytest_asyncio.fixture(scope="module")
async def traced_stack(
    viewer: ServerProcess, tmp_path_factory: pytest.TempPathFactory, nats_url: str, redis_url: str
) -> AsyncIterator[Stack]:
    async with run_stack(
        tmp_path_factory.mktemp("traced"), nats_url, redis_url, otlp=viewer.url
    ) as stack:
        yield stack


async def spans_of(stack: Stack, viewer: ServerProcess, trace_id: str) -> list[dict[str, Any]]:
    """The trace's spans once a span from every wanted service has reached the viewer."""
    url = f"{viewer.url}/v1/projects/default/spans?trace_id={trace_id}&limit=200"
    deadline, spans = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        async with stack.http.get(url) as r:
            if r.status == 200:
                spans = (await r.json())["data"]
                if set(WANTED) <= {s["name"] for s in spans}:
                    return spans
        await asyncio.sleep(0.5)  # allowed: the viewer stores spans as its exporters send them
    raise AssertionError(f"incomplete trace in the viewer: {sorted(s['name'] for s in spans)}")


async def test_one_message_is_one_trace_across_every_service_in_the_viewer(
    viewer: ServerProcess, traced_stack: Stack, watched: Watched
) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
    body = {"message": "Where is my order?", "session_id": f"tr-{uuid.uuid4().hex[:8]}"}
    async with traced_stack.http.post(
        f"{traced_stack.url}/api/chat/support", json=body, headers=headers
    ) as r:
        assert r.status == 200, await r.text()

    spans = await spans_of(traced_stack, viewer, trace_id)
    ids = {s["context"]["span_id"] for s in spans} | {parent}
    assert all(s.get("parent_id") in ids for s in spans)  # one tree, no orphan
    llm = next(s for s in spans if s["name"].startswith("chat "))  # the model call
    assert int(llm["attributes"].get("gen_ai.usage.input_tokens", 0)) > 0

    page = watched.page
    await page.goto(trace_url(viewer.url, trace_id))
    for name in WANTED:  # the trace's tree shows every service's span
        await page.get_by_text(name, exact=False).first.wait_for(timeout=90_000)
    await page.get_by_text(llm["name"], exact=True).first.click()  # the model call's details
    # the model call's token count, as the user sees it: in the details' Attributes section,
    # which a user opens when the viewer shows it collapsed (seen once in CI: the attribute
    # was in the page but hidden for 90 s)
    tokens = page.get_by_text("gen_ai.usage.input_tokens").filter(visible=True).first
    try:
        await tokens.wait_for(timeout=30_000)
    except playwright_api.TimeoutError:
        await screenshot(page, "traces-collapsed")
        await page.get_by_role("button", name=re.compile(r"^\s*Attributes")).first.click()
        await tokens.wait_for(timeout=60_000)
    await screenshot(page, "traces")
