"""Two OpenAI-API conversations that begin alike stay two conversations.

Without ``X-Session-Id``, the session of a ``/v1/chat/completions`` conversation was a hash of
the tenant, the ``user`` field and the first user message. Two customers of a tenant's app
who both opened with "Hello" (no ``user`` field, as the SDK sends by default) shared one
session: the second one's model saw the first one's order number in its history.
Now a conversation is known by its first exchange (the first user message *and* the reply
the gateway gave it), which no other conversation has.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from chatbus_dev.offline_llm import OfflineLLM
from tests.security.conftest import Stack

pytestmark = pytest.mark.timeout(60)


async def _complete(
    http: aiohttp.ClientSession,
    stack: Stack,
    messages: list[dict[str, str]],
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> tuple[str, str]:
    body = {"model": stack.agent, "messages": messages, **extra}
    async with http.post(
        f"{stack.url}/v1/chat/completions",
        json=body,
        headers={**stack.a.auth, **(headers or {})},
    ) as r:
        assert r.status == 200, await r.text()
        answer = await r.json()
        return answer["choices"][0]["message"]["content"], r.headers["X-Session-Id"]


async def test_conversations_that_open_alike_do_not_share_a_session(
    stack: Stack, http: aiohttp.ClientSession, fake_llm: tuple[OfflineLLM, str]
) -> None:
    llm, _ = fake_llm
    hello = [{"role": "user", "content": "Hello"}]
    reply_a, session_a = await _complete(http, stack, hello)
    secret = [
        *hello,
        {"role": "assistant", "content": reply_a},
        {"role": "user", "content": "My order is 7731"},
    ]
    _, again_a = await _complete(http, stack, secret)
    assert again_a == session_a  # one conversation keeps its session

    reply_b, session_b = await _complete(http, stack, hello)  # another customer, same opening
    assert session_b != session_a
    follow_up = [
        *hello,
        {"role": "assistant", "content": reply_b},
        {"role": "user", "content": "What is my order?"},
    ]
    _, again_b = await _complete(http, stack, follow_up)
    assert again_b == session_b
    prompt = llm.requests_for(stack.agent)[-1].prompt_text  # what B's model call was given
    assert "What is my order?" in prompt and "7731" not in prompt

    for _ in range(2):  # with a user id, too
        opened = await _complete(http, stack, hello, user="u1")
        assert opened[1] not in (session_a, session_b)
    assert (await _complete(http, stack, hello, user="u1"))[1] != opened[1]


async def test_a_retried_first_message_with_an_idempotency_key_keeps_its_session(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    hello = [{"role": "user", "content": "Hello"}]
    key = {"Idempotency-Key": f"open-{stack.a.name}"}
    first = await _complete(http, stack, hello, key)
    assert await _complete(http, stack, hello, key) == first  # the replay, same session
    assert (await _complete(http, stack, hello))[1] != first[1]
