"""Past a session's cap, the oldest turns are summarised by the LLM, then dropped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest, Turn
from chatbus.memory_client import BusMemory, turn_event_id
from chatbus.runtime import Runtime
from chatbus_dev import offline_llm
from chatbus_dev.offline_llm import OfflineLLM, Scripted

from .conftest import Indexed, memory_settings, running_memory


@pytest_asyncio.fixture(scope="module")
async def llm() -> AsyncIterator[tuple[OfflineLLM, str]]:
    state = OfflineLLM()
    runner, url = await offline_llm.start(state)
    yield state, url
    await runner.cleanup()


@pytest_asyncio.fixture(scope="module")
async def memory_rt(
    nats_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    llm: tuple[OfflineLLM, str],
) -> AsyncIterator[Runtime]:
    settings = memory_settings(
        nats_url,
        redis_url,
        tmp_path_factory.mktemp("memory"),
        openai_base_url=llm[1],
        memory_session_cap=10,
        memory_summary_batch=6,
    )
    async with running_memory(settings) as rt:
        yield rt


async def test_turns_past_the_cap_become_an_llm_summary(
    bus: Bus, memory_rt: Runtime, indexed: Indexed, llm: tuple[OfflineLLM, str]
) -> None:
    state, _ = llm
    state.push(Scripted(content="The user's order number is 4471; their dog is Biscuit."))
    memory = BusMemory(bus, timeout=10)
    session = f"cap-{uuid.uuid4().hex[:8]}"
    ids = []
    for i in range(6):
        req = ChatRequest(request_id=f"{session}-{i}", agent="a", session_id=session, message="m")
        text = "My order number is 4471." if i == 0 else f"message {i}"
        await memory.remember(
            req,
            [
                Turn(role="user", content=text, created_at=1000 + 2 * i),
                Turn(role="assistant", content=f"reply {i}", created_at=1001 + 2 * i),
            ],
        )
        ids += [turn_event_id(req, 0), turn_event_id(req, 1)]
    await indexed.wait_for(ids)

    stats = await memory.stats("default", session)
    assert stats.session_summaries == 1
    assert stats.session_turns == 12 - 6
    history = await memory.history("default", session)
    assert history[0].role == "summary"
    assert "4471" in history[0].content
    assert [t.content for t in history[1:3]] == ["message 3", "reply 3"]
    # the summary was asked for with the dropped turns
    asked = state.requests[-1].prompt_text
    assert "My order number is 4471." in asked and "reply 2" in asked and "message 3" not in asked
    # and is recalled like any turn
    hits = await memory.search("default", query="what is my order number", session_id=session)
    assert hits.hits[0].turn.role == "summary"


async def test_llm_down_falls_back_to_an_extractive_summary(
    bus: Bus, memory_rt: Runtime, llm: tuple[OfflineLLM, str]
) -> None:
    state, _ = llm
    state.fail_next(500, times=5)
    memory = BusMemory(bus, timeout=30)
    session = f"cap-{uuid.uuid4().hex[:8]}"
    turns = [Turn(role="user", content=f"fact {i}: my number is {1000 + i}.") for i in range(11)]
    await memory.import_turns("default", session, turns)
    history = await memory.history("default", session)
    assert history[0].role == "summary"
    assert "fact 0: my number is 1000." in history[0].content
    assert len(history) == 1 + 11 - 6
