"""``Idempotency-Key`` behaves the same on the sync, stream, OpenAI and async paths (issue 10,
defect 6): one length rule (1-200), another body with a used key is a 409, and a request
refused by the limits (429) leaves no trace of its key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import Callbacks, RunningGateway, StartGateway

# path name -> (url suffix, body for (session, message), extra headers)
Send = Callable[[str, str], tuple[str, dict[str, Any], dict[str, str]]]


def paths(agent: str, hook: str) -> dict[str, Send]:
    def sync(session: str, message: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        return f"/api/chat/{agent}", {"message": message, "session_id": session}, {}

    def stream(session: str, message: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        body = {"message": message, "session_id": session}
        return f"/api/chat/{agent}", body, {"Accept": "text/event-stream"}

    def openai(session: str, message: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        body = {"model": agent, "messages": [{"role": "user", "content": message}]}
        return "/v1/chat/completions", body, {"X-Session-Id": session}

    def openai_stream(session: str, message: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        url, body, headers = openai(session, message)
        return url, {**body, "stream": True}, headers

    def asynchronous(session: str, message: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        body = {"message": message, "session_id": session, "callback_url": hook}
        return f"/api/chat/{agent}?mode=async", body, {}

    return {
        "sync": sync,
        "stream": stream,
        "openai": openai,
        "openai-stream": openai_stream,
        "async": asynchronous,
    }


async def send(
    http: aiohttp.ClientSession,
    gw: RunningGateway,
    how: Send,
    session: str,
    message: str,
    key: str,
) -> tuple[int, str]:
    """The status and body; a replayed answer's body is prefixed with "REPLAYED "."""
    url, body, headers = how(session, message)
    async with http.post(gw.url + url, json=body, headers={**headers, "Idempotency-Key": key}) as r:
        replayed = "REPLAYED " if r.headers.get("Idempotent-Replayed") else ""
        return r.status, replayed + await r.text()


async def test_one_length_rule_and_409_for_another_body_on_every_path(
    gateway: RunningGateway,
    agent: StubAgent,
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    for name, how in paths(agent.agent, callbacks.url).items():
        session = f"{name}-{uid}"
        status, text = await send(http, gateway, how, session, "hello", "k" * 201)
        assert status == 422 and "Idempotency-Key" in text, (name, text)
        key = f"{name}-" + "k" * (200 - len(name) - 1)
        first, text = await send(http, gateway, how, session, "hello", key)
        assert first in (200, 202), (name, text)
        again, text = await send(http, gateway, how, session, "hello", key)
        assert again == first and text.startswith("REPLAYED"), (name, text)
        other, text = await send(http, gateway, how, session, "something else", key)
        assert other == 409 and "Idempotency-Key" in text, (name, other, text)


async def test_a_rate_limited_request_leaves_its_key_unused(
    start_gateway: StartGateway,
    agent: StubAgent,
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    gw = await start_gateway(rate_session_per_min=1)
    for name, how in paths(agent.agent, callbacks.url).items():
        busy = f"busy-{name}-{uid}"
        status, text = await send(http, gw, how, busy, "first", f"a-{name}")
        assert status in (200, 202), (name, text)
        status, _ = await send(http, gw, how, busy, "second", f"b-{name}")
        assert status == 429, name
        # Had the refused request stored key b, this (another body) would be a 409 or a
        # replay of a job that never existed; it is a fresh request instead.
        status, text = await send(http, gw, how, f"fresh-{name}-{uid}", "third", f"b-{name}")
        assert status in (200, 202), (name, status, text)
        assert not text.startswith("REPLAYED"), (name, text)
