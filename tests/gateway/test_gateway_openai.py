"""The official OpenAI SDK, unchanged, against the gateway: sync, async, streaming, models."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from chatbus_dev.offline_llm import OfflineLLM
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import RunningGateway


async def test_async_sdk_chats_and_the_conversation_keeps_its_session(
    gateway: RunningGateway, agent: StubAgent, fake_llm: tuple[OfflineLLM, str]
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="cb-test", max_retries=0)
    first = [{"role": "user", "content": "My name is Ada."}]
    r1 = await client.chat.completions.create(
        model=agent.agent,
        messages=first,
        user="u-1",
        temperature=0.2,
        seed=7,  # ignored
    )
    assert "My name is Ada." in (r1.choices[0].message.content or "")
    assert r1.usage is not None and r1.usage.total_tokens > 0
    conversation = [
        *first,
        {"role": "assistant", "content": r1.choices[0].message.content},
        {"role": "user", "content": "What is my name?"},
    ]
    await client.chat.completions.create(model=agent.agent, messages=conversation, user="u-1")
    # Only the last user message travels; the agent's own history carries the first one.
    assert [r.message for r in agent.seen] == ["My name is Ada.", "What is my name?"]
    assert agent.seen[0].session_id == agent.seen[1].session_id
    assert agent.seen[0].user_id == "u-1"
    llm, _ = fake_llm
    assert "My name is Ada." in llm.requests_for(agent.agent)[-1].prompt_text
    # X-Session-Id picks the session explicitly.
    await client.chat.completions.create(
        model=agent.agent, messages=first, extra_headers={"X-Session-Id": "mine"}
    )
    assert agent.seen[-1].session_id == "mine"
    await client.close()


async def test_sync_sdk_and_streaming(gateway: RunningGateway, agent: StubAgent) -> None:
    def run() -> tuple[str, list[str], int]:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="cb-test", max_retries=0)
        plain = client.chat.completions.create(
            model=agent.agent, messages=[{"role": "user", "content": "hello there"}]
        )
        stream = client.chat.completions.create(
            model=agent.agent,
            messages=[{"role": "user", "content": "stream this please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        deltas, total = [], 0
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
            if chunk.usage:
                total = chunk.usage.total_tokens
        return plain.choices[0].message.content or "", deltas, total

    text, deltas, total = await asyncio.to_thread(run)
    assert "hello there" in text
    assert len(deltas) > 3  # real chunks, not one blob
    assert "stream this please" in "".join(deltas)
    assert total > 0
    assert agent.seen[-1].stream_inbox  # the agent was asked to stream


async def test_native_api_streams_chunk_events_then_done(
    gateway: RunningGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    """The native API streams too: chunk events as the model produces them, then done."""
    async with http.post(
        f"{gateway.url}/api/chat/{agent.agent}",
        json={"message": "tell me more", "session_id": "s"},
        headers={"Accept": "text/event-stream"},
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = [line.decode().strip() async for line in r.content if line.strip()]
    kinds = [e.removeprefix("event: ") for e in events if e.startswith("event: ")]
    assert kinds.count("chunk") > 3 and kinds[-1] == "done"
    assert '"reply"' in events[-1] and "tell me more" in events[-1]


async def test_chunks_reach_the_client_while_the_agent_is_still_answering(
    gateway: RunningGateway, agent: StubAgent
) -> None:
    agent.gate = asyncio.Event()
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="cb-test", max_retries=0)
    stream = await client.chat.completions.create(
        model=agent.agent, messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    chunks = aiter(stream)
    await anext(chunks)  # role
    first = await asyncio.wait_for(anext(chunks), 5)  # arrives while the agent is paused
    assert first.choices[0].delta.content and not agent.gate.is_set()
    agent.gate.set()
    rest = [c.choices[0].delta.content or "" async for c in chunks if c.choices]
    assert "three" in (first.choices[0].delta.content or "") + "".join(rest)
    await client.close()


async def test_models_and_errors(gateway: RunningGateway, agent: StubAgent, uid: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="cb-test", max_retries=0)
    models = await client.models.list()
    assert agent.agent in [m.id for m in models.data]
    with pytest.raises(openai.NotFoundError, match="unknown agent"):
        await client.chat.completions.create(
            model=f"ghost-{uid}", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model=f"ghost-{uid}", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    with pytest.raises(openai.UnprocessableEntityError, match="messages"):
        await client.chat.completions.create(
            model=agent.agent, messages=[{"role": "system", "content": "only system"}]
        )
    await client.close()


async def test_a_streamed_retry_with_the_same_idempotency_key_is_replayed(
    gateway: RunningGateway,
    agent: StubAgent,
    fake_llm: tuple[OfflineLLM, str],
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    """A client that lost a streamed answer retries with its key: same text, one model call."""
    llm, _ = fake_llm
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="cb-test", max_retries=0)
    key = {"Idempotency-Key": f"stream-{uid}", "X-Session-Id": f"s-{uid}"}

    async def streamed() -> tuple[str, str | None]:
        raw = await client.chat.completions.with_raw_response.create(
            model=agent.agent,
            messages=[{"role": "user", "content": "stream me once"}],
            stream=True,
            extra_headers=key,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        return text, raw.headers.get("Idempotent-Replayed")

    first, replayed_first = await streamed()
    second, replayed_second = await streamed()
    assert "stream me once" in first and second == first
    assert (replayed_first, replayed_second) == (None, "true")
    assert len(llm.requests_for(agent.agent)) == 1
    # The native API with the same key replays it too, as chunk + done events.
    async with http.post(
        f"{gateway.url}/api/chat/{agent.agent}",
        json={"message": "stream me once", "session_id": f"s-{uid}"},
        headers={"Accept": "text/event-stream", "Idempotency-Key": f"native-{uid}"},
    ) as r:
        assert r.status == 200 and "Idempotent-Replayed" not in r.headers
        await r.read()
    async with http.post(
        f"{gateway.url}/api/chat/{agent.agent}",
        json={"message": "stream me once", "session_id": f"s-{uid}"},
        headers={"Accept": "text/event-stream", "Idempotency-Key": f"native-{uid}"},
    ) as r:
        assert r.headers.get("Idempotent-Replayed") == "true"
        events = [line.decode().strip() async for line in r.content if line.strip()]
    assert [e for e in events if e.startswith("event: ")] == ["event: chunk", "event: done"]
    assert len(llm.requests_for(agent.agent)) == 2
    await client.close()
