"""Memory routes obey the chat bounds; an import is bounded so no request holds memory long.

Issue 10, defect 8: a 900 KB search body got 200, one 900k-character imported turn 201 (1,125
chunks), a 10,000-turn import 201 after 46 s of memory-service work inside one request.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from chatbus_gateway.api.store_schemas import MAX_IMPORT_TURNS
from tests.security.conftest import Stack


async def _post(
    http: aiohttp.ClientSession, stack: Stack, path: str, body: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(stack.url + path, json=body, headers=stack.a.auth) as r:
        return r.status, await r.json()


async def test_memory_bodies_and_texts_are_bounded_like_chat(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    big_query = {"session_id": "s", "query": "x" * 900_000}
    status, answer = await _post(http, stack, "/api/memory/search", big_query)
    assert status == 413 and answer["error"]["type"] == "request_too_large"
    long_query = {"session_id": "s", "query": "word " * 2000}  # 10,000 > MAX_MESSAGE_CHARS
    status, answer = await _post(http, stack, "/api/memory/search", long_query)
    assert status == 422 and answer["error"]["param"] == "query"
    long_turn = [{"role": "user", "content": "word " * 2000}]
    status, answer = await _post(http, stack, "/api/sessions/s/messages", long_turn)
    assert status == 422 and answer["error"]["param"] == "messages.0.content"
    huge_turn = [{"role": "user", "content": "x" * 900_000}]
    status, _ = await _post(http, stack, "/api/sessions/s/messages", huge_turn)
    assert status == 413


async def test_an_import_takes_a_bounded_number_of_turns(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    too_many = [{"role": "user", "content": "hi"}] * (MAX_IMPORT_TURNS + 1)
    status, answer = await _post(http, stack, "/api/sessions/many/messages", too_many)
    assert status == 422 and answer["error"]["param"] == "messages"
    # The most one request may carry is stored at once, well within a request's time.
    started = time.monotonic()
    most = [{"role": "user", "content": f"turn {i}"} for i in range(MAX_IMPORT_TURNS)]
    status, answer = await _post(http, stack, "/api/sessions/many/messages", most)
    assert status == 201 and answer["imported"] == MAX_IMPORT_TURNS
    assert time.monotonic() - started < 30
