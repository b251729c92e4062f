"""An agent service on the real bus: discovery, replies, streaming, replicas, bad messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import nats.errors
import pytest

from chatbus.agent.service import make_wire
from chatbus.agent.settings import AgentSettings
from chatbus.agent.spec import AgentSpec
from chatbus.bus import Bus
from chatbus.contracts.chat import AgentInfo, AgentPing, ChatChunk, ChatReply, ChatRequest
from chatbus.errors import NoResponders, RemoteError
from chatbus.runtime import Runtime
from chatbus_dev.offline_llm import OfflineLLM, Scripted
from chatbus_dev.testing import InProcess, serving


def agent_settings(
    spec: AgentSpec, nats_url: str, redis_url: str, llm_url: str, **overrides: object
) -> AgentSettings:
    off: dict[str, object] = {"memory_enabled": False, "cost_enabled": False}
    return AgentSettings(
        service_name=f"agent-{spec.id}",
        nats_url=nats_url,
        redis_url=redis_url,
        port=0,
        host="127.0.0.1",
        openai_base_url=llm_url,
        cache_enabled=False,
        log_format="text",
        **{**off, **overrides},  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running_agent(
    spec: AgentSpec, nats_url: str, redis_url: str, llm_url: str, **overrides: object
) -> AsyncIterator[Runtime]:
    settings = agent_settings(spec, nats_url, redis_url, llm_url, **overrides)
    async with serving(settings, make_wire(spec)) as service:
        yield service.rt


def spec_for(uid: str, prompt: str = "You are a careful test agent.") -> AgentSpec:
    return AgentSpec(
        id=f"tester{uid}", label="Tester", description="answers tests", system_prompt=prompt
    )


def request(spec: AgentSpec, message: str, session: str, **kw: object) -> ChatRequest:
    return ChatRequest(
        request_id=uuid.uuid4().hex, agent=spec.id, session_id=session, message=message, **kw
    )  # type: ignore[arg-type]


async def test_agent_answers_with_its_prompt_and_remembers_the_session(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    spec = spec_for(uid, "You are the tester persona 7F3.")
    async with running_agent(spec, nats_url, redis_url, url):
        subject = ChatRequest.subject_for(spec.id)
        first = await bus.request(request(spec, "My dog is Biscuit", f"s{uid}"), ChatReply, subject)
        second = await bus.request(
            request(spec, "What is my dog called?", f"s{uid}"), ChatReply, subject
        )
    assert first.agent == spec.id and "offline model" in first.reply
    sent = llm.requests_for(spec.id)
    assert len(sent) == 2
    assert "tester persona 7F3" in sent[0].system
    assert any(m["content"] == "My dog is Biscuit" for m in sent[1].messages[:-1])
    assert second.usage.prompt_tokens > 0 and second.usage.completion_tokens > 0


async def test_sessions_do_not_see_each_other(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    spec = spec_for(uid)
    async with running_agent(spec, nats_url, redis_url, url):
        subject = ChatRequest.subject_for(spec.id)
        await bus.request(request(spec, "secret word is tangerine", f"a{uid}"), ChatReply, subject)
        await bus.request(request(spec, "hello", f"b{uid}"), ChatReply, subject)
    assert "tangerine" not in llm.requests_for(spec.id)[1].prompt_text


async def test_streaming_publishes_chunks_before_the_reply(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    llm.push(Scripted(content="one two three four"))
    spec = spec_for(uid)
    inbox = bus.nc.new_inbox()
    sub = await bus.nc.subscribe(inbox)
    async with running_agent(spec, nats_url, redis_url, url):
        reply = await bus.request(
            request(spec, "count", f"s{uid}", stream_inbox=inbox),
            ChatReply,
            ChatRequest.subject_for(spec.id),
        )
        chunks: list[ChatChunk] = []
        while not (chunks and chunks[-1].done):
            chunks.append(ChatChunk.from_bytes((await sub.next_msg(timeout=2)).data))
    assert "".join(c.delta for c in chunks) == "one two three four" == reply.reply
    assert len(chunks) >= 5  # several deltas, then done


async def test_llm_failure_reaches_the_caller_as_upstream_error(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    llm.fail_next(400, times=1)
    spec = spec_for(uid)
    async with running_agent(spec, nats_url, redis_url, url):
        with pytest.raises(RemoteError) as e:
            await bus.request(
                request(spec, "hi", f"s{uid}"), ChatReply, ChatRequest.subject_for(spec.id)
            )
        assert e.value.code == "upstream"
        # and it keeps serving
        ok = await bus.request(
            request(spec, "hi again", f"s{uid}"), ChatReply, ChatRequest.subject_for(spec.id)
        )
        assert ok.reply


async def test_malformed_request_gets_an_error_reply(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    _, url = fake_llm
    spec = spec_for(uid)
    async with running_agent(spec, nats_url, redis_url, url):
        resp = await bus.nc.request(ChatRequest.subject_for(spec.id), b'{"message": ""}', timeout=2)
        assert b"invalid" in resp.data and b"session_id" in resp.data
        ok = await bus.request(
            request(spec, "still there?", f"s{uid}"), ChatReply, ChatRequest.subject_for(spec.id)
        )
        assert ok.agent == spec.id


async def test_two_replicas_share_work_and_both_answer_discovery(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    spec = spec_for(uid)
    async with (
        running_agent(spec, nats_url, redis_url, url) as a,
        running_agent(spec, nats_url, redis_url, url) as b,
    ):
        # Discovery as the gateway does it: ask again (bounded) until both instances answered.
        inbox = bus.nc.new_inbox()
        sub = await bus.nc.subscribe(inbox)
        mine: set[str] = set()
        give_up = time.monotonic() + 15
        while len(mine) < 2 and time.monotonic() < give_up:
            await bus.nc.publish(AgentPing.subject, AgentPing().to_bytes(), reply=inbox)
            with contextlib.suppress(nats.errors.TimeoutError):
                while len(mine) < 2:
                    info = AgentInfo.from_bytes((await sub.next_msg(timeout=1)).data)
                    if info.id == spec.id:
                        mine.add(info.instance_id)
        assert len(mine) == 2

        handled_by: Callable[[Runtime], float] = lambda rt: sum(  # noqa: E731
            s.samples[0].value
            for m in rt.registry.collect()
            if m.name == "chatbus_messages"
            for s in [m]
            if m.samples
        )
        replies = await asyncio.gather(
            *(
                bus.request(
                    request(spec, f"m{i}", f"s{uid}{i}"),
                    ChatReply,
                    ChatRequest.subject_for(spec.id),
                )
                for i in range(40)
            )
        )
        assert len({r.request_id for r in replies}) == 40
        assert handled_by(a) > 0 and handled_by(b) > 0
        assert handled_by(a) + handled_by(b) == 40
    assert len(llm.requests_for(spec.id)) == 40


async def test_sigterm_lets_in_flight_messages_finish(
    bus: Bus, nats_url: str, redis_url: str, fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    llm, url = fake_llm
    llm.push(Scripted(content="finished despite shutdown", delay_s=0.5))
    spec = spec_for(uid)
    async with serving(agent_settings(spec, nats_url, redis_url, url), make_wire(spec)) as svc:
        await check_in_flight_survives(bus, llm, spec, svc, uid)


async def check_in_flight_survives(
    bus: Bus, llm: OfflineLLM, spec: AgentSpec, svc: InProcess, uid: str
) -> None:
    llm.on_request.clear()
    pending = asyncio.create_task(
        bus.request(
            request(spec, "slow", f"s{uid}"), ChatReply, ChatRequest.subject_for(spec.id), timeout=5
        )
    )
    await asyncio.wait_for(llm.on_request.wait(), 5)  # the agent is now mid-call
    stopped = asyncio.create_task(svc.stop())  # what SIGTERM does
    reply = await pending
    assert reply.reply == "finished despite shutdown"
    await stopped
    with pytest.raises(NoResponders):  # and it took no new work after stopping
        await bus.request(
            request(spec, "late", f"s{uid}"), ChatReply, ChatRequest.subject_for(spec.id), timeout=2
        )
