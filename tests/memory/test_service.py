"""The memory service over the real bus: store through JetStream, recall, isolation, forget."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest, Turn
from chatbus.contracts.forget import ForgetConfirmed, ForgetRequested
from chatbus.contracts.memory import (
    GetHistory,
    ImportTurns,
    SearchMemory,
    TurnsImported,
    TurnStored,
)
from chatbus.dead_letters import list_dead_letters
from chatbus.errors import RemoteError
from chatbus.forget import ensure_forget_stream
from chatbus.memory_client import BusMemory, turn_event_id
from chatbus.runtime import Runtime
from chatbus_dev.offline_llm import OfflineLLM
from tests.agent.test_agent_service import request as agent_request
from tests.agent.test_agent_service import running_agent, spec_for

from .conftest import Indexed, memory_settings, running_memory

FILLER = [
    "Can you recommend a good book for the weekend?",
    "I think the weather will be rainy tomorrow.",
    "How do I reset my password on the website?",
    "My sister is visiting next month.",
    "What time does the support line open?",
    "I had pasta for dinner yesterday.",
    "Could you explain how shipping costs are calculated?",
    "The train was late again this morning.",
    "I am thinking about learning to play the guitar.",
    "Do you have any tips for sleeping better?",
]


@pytest_asyncio.fixture(scope="module")
async def memory_rt(
    nats_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runtime]:
    settings = memory_settings(nats_url, redis_url, tmp_path_factory.mktemp("memory"))
    async with running_memory(settings) as rt:
        yield rt


@pytest.fixture
def memory(bus: Bus, memory_rt: Runtime) -> BusMemory:
    return BusMemory(bus, threshold=0.3, timeout=10)


async def forget(bus: Bus, **target: str) -> ForgetConfirmed:
    """A forget event (what DELETE /api/sessions|users/{id} publishes); memory's confirmation."""
    await ensure_forget_stream(bus, owners=("memory",))
    event = ForgetRequested(forget_id=uuid.uuid4().hex, **target)  # type: ignore[arg-type]
    sub = await bus.nc.subscribe(f"{ForgetConfirmed.subject}.{event.forget_id}.memory")
    await bus.nc.flush()
    await bus.js_publish(event, event.subject_of(), msg_id=event.forget_id)
    confirmed = await sub.next_msg(timeout=20)
    await sub.unsubscribe()
    return ForgetConfirmed.model_validate_json(confirmed.data)


def request(session: str, message: str, *, user: str | None = None, tenant: str = "default"):
    return ChatRequest(
        request_id=uuid.uuid4().hex,
        agent="support",
        session_id=session,
        message=message,
        user_id=user,
        tenant_id=tenant,
    )


async def say(
    memory: BusMemory, indexed: Indexed, session: str, pairs: list[tuple[str, str]], **kw: str
) -> None:
    """Remember user/assistant exchanges the way the agent runtime does, and wait until stored."""
    ids: list[str] = []
    for user_text, reply in pairs:
        req = request(session, user_text, **kw)
        turns = [Turn(role="user", content=user_text), Turn(role="assistant", content=reply)]
        await memory.remember(req, turns)
        ids += [turn_event_id(req, i) for i in range(len(turns))]
    await indexed.wait_for(ids)


async def test_recalls_facts_fifty_turns_later(memory: BusMemory, indexed: Indexed) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    pairs = [
        ("Hi! My order number is 4471 and it has not arrived.", "Sorry to hear that, checking."),
        ("Also, my dog is called Biscuit and he chewed the box.", "Poor box! Noted."),
    ]
    pairs += [(FILLER[i % len(FILLER)], f"Sure, answer number {i}.") for i in range(25)]
    await say(memory, indexed, session, pairs)

    recalled = await memory.recall(
        request(session, "What was my order number?"), k=5, scope="session"
    )
    assert any("4471" in t.content for t in recalled)
    recalled = await memory.recall(request(session, "What's my dog's name?"), k=5, scope="session")
    assert any("Biscuit" in t.content for t in recalled)
    assert len(recalled) <= 5


async def test_history_is_in_order(memory: BusMemory, indexed: Indexed) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    await say(memory, indexed, session, [(f"question {i}", f"answer {i}") for i in range(6)])
    turns = await memory.history("default", session, limit=4)
    assert [t.content for t in turns] == ["question 4", "answer 4", "question 5", "answer 5"]
    older = await memory.history("default", session, limit=50, before=turns[0].created_at)
    assert [t.content for t in older][-2:] == ["question 3", "answer 3"]
    assert len(older) == 8


async def test_unknown_session_is_empty_not_an_error(memory: BusMemory) -> None:
    assert await memory.history("default", "never-seen") == []
    result = await memory.search("default", query="anything at all", session_id="never-seen")
    assert result.hits == []


async def test_sessions_users_and_tenants_are_isolated(memory: BusMemory, indexed: Indexed) -> None:
    u = uuid.uuid4().hex[:8]
    fact = "My locker code is 9182."
    # same session id in two tenants; another user of the same tenant; the user's other session
    await say(memory, indexed, f"a-{u}", [(fact, "ok")], user=f"alice-{u}", tenant=f"t1-{u}")
    await say(memory, indexed, f"a-{u}", [("My locker code is 5555.", "ok")], tenant=f"t2-{u}")
    await say(
        memory,
        indexed,
        f"b-{u}",
        [("My locker code is 7777.", "ok")],
        user=f"bob-{u}",
        tenant=f"t1-{u}",
    )
    await say(
        memory, indexed, f"a2-{u}", [("I like tea.", "ok")], user=f"alice-{u}", tenant=f"t1-{u}"
    )

    q = "what is my locker code?"
    in_t2 = await memory.recall(request(f"a-{u}", q, tenant=f"t2-{u}"), k=5, scope="session")
    assert [t.content for t in in_t2 if "locker" in t.content] == ["My locker code is 5555."]

    # alice, from her second session, with user scope: her own code only
    req = request(f"a2-{u}", q, user=f"alice-{u}", tenant=f"t1-{u}")
    mine = [t.content for t in await memory.recall(req, k=5, scope="user")]
    assert fact in mine
    assert not any("7777" in c or "5555" in c for c in mine)
    # session scope from the second session does not see the first
    only_here = [t.content for t in await memory.recall(req, k=5, scope="session")]
    assert fact not in only_here


async def test_forget_session_leaves_no_trace(
    bus: Bus, memory: BusMemory, indexed: Indexed, redis: aioredis.Redis
) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    await say(memory, indexed, session, [("My passport number is X123.", "Stored.")])
    history_key = f"agent:default:history:{session}"  # the agent runtime's, not memory's
    await redis.rpush(history_key, b"{}")

    gone = await forget(bus, session_id=session)
    assert gone.deleted == 2 and gone.sessions == [session]
    assert await memory.history("default", session) == []
    hits = await memory.search("default", query="passport number", session_id=session, threshold=0)
    assert hits.hits == []
    assert await redis.exists(history_key)  # memory touches only its own state
    await redis.delete(history_key)
    assert not await redis.keys("chatbus:embcache:*")  # vectors are never copied to Redis


async def test_forget_user_removes_all_their_sessions_only(
    bus: Bus, memory: BusMemory, indexed: Indexed
) -> None:
    u = uuid.uuid4().hex[:8]
    await say(memory, indexed, f"x1-{u}", [("I was born in Porto.", "Nice.")], user=f"carol-{u}")
    await say(memory, indexed, f"x2-{u}", [("My bike is red.", "Cool.")], user=f"carol-{u}")
    await say(memory, indexed, f"y1-{u}", [("My bike is blue.", "Cool.")], user=f"dave-{u}")

    gone = await forget(bus, user_id=f"carol-{u}")
    assert sorted(gone.sessions) == [f"x1-{u}", f"x2-{u}"]
    assert gone.deleted == 4
    for s in (f"x1-{u}", f"x2-{u}"):
        assert await memory.history("default", s) == []
    q = "what colour is my bike"
    found = await memory.search("default", query=q, user_id=f"carol-{u}", scope="user", threshold=0)
    assert found.hits == []
    assert len(await memory.history("default", f"y1-{u}")) == 2


async def test_an_import_stays_in_memory_and_tells_the_agents_by_an_event(
    bus: Bus, memory: BusMemory, redis: aioredis.Redis
) -> None:
    """Memory writes no agent key: it publishes TurnsImported (durably, before answering),
    which the agent runtime turns into its own note of the session's past."""
    session = f"imp-{uuid.uuid4().hex[:8]}"
    announced: asyncio.Future[TurnsImported] = asyncio.get_running_loop().create_future()

    async def on_event(event: TurnsImported) -> None:
        if event.session_id == session and not announced.done():
            announced.set_result(event)

    await bus.subscribe(TurnsImported.subject, TurnsImported, on_event)
    await bus.nc.flush()
    turns = [Turn(role="user", content=f"imported turn {i}") for i in range(60)]
    await memory.import_turns("default", session, turns, user_id="imp-user")
    event = await asyncio.wait_for(announced, 10)
    assert (event.turns, event.user_id) == (60, "imp-user")
    assert len(await memory.history("default", session, limit=100)) == 60
    assert not await redis.keys(f"agent:*{session}*")
    assert not await redis.keys(f"chatbus:*{session}*")


def searches(memory_rt: Runtime) -> float:
    return memory_rt.registry.get_sample_value("chatbus_memory_search_seconds_count") or 0.0


async def test_an_agent_recalls_an_import_and_never_searches_a_new_session(
    bus: Bus,
    memory: BusMemory,
    memory_rt: Runtime,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    spec = spec_for(uid)
    subject = ChatRequest.subject_for(spec.id)
    async with running_agent(spec, nats_url, redis_url, url, memory_enabled=True):
        before = searches(memory_rt)
        await bus.request(agent_request(spec, "hello", f"new-{uid}"), ChatReply, subject)
        assert searches(memory_rt) == before  # a new session: memory is not asked

        past = [
            Turn(role="user", content="My dog is called Biscuit."),
            Turn(role="assistant", content="What a lovely name!"),
        ]
        await memory.import_turns("default", f"imp-{uid}", past)  # answered once agents noted it
        question = agent_request(spec, "What is my dog called?", f"imp-{uid}")
        await bus.request(question, ChatReply, subject)
        assert searches(memory_rt) == before + 1
    assert "Biscuit" in llm.requests_for(spec.id)[-1].system


async def test_import_is_idempotent_and_long_turns_are_chunked(memory: BusMemory) -> None:
    session = f"imp-{uuid.uuid4().hex[:8]}"
    long = " ".join(
        f"Paragraph {i} of the travel diary describes hills, rivers and small villages."
        for i in range(60)
    )
    turns = [
        Turn(role="user", content="I am planning a trip to Japan in April.", speaker="Ann"),
        Turn(role="assistant", content="Great, cherry blossom season!"),
        Turn(role="user", content=long + " The hotel booking reference is QX-7781."),
    ]
    first = await memory.import_turns("default", session, turns)
    again = await memory.import_turns("default", session, turns)
    assert first.imported == again.imported == 3
    assert first.chunks > 3  # the long turn became several chunks
    stats = await memory.stats("default", session)
    assert stats.session_turns == 3

    history = await memory.history("default", session)
    assert [t.content for t in history] == [t.content for t in turns]
    assert history[0].speaker == "Ann"
    hits = await memory.search("default", query="hotel booking reference", session_id=session)
    assert "QX-7781" in hits.hits[0].turn.content
    assert len(hits.hits[0].turn.content) < len(turns[2].content)  # the chunk, not all of it


async def test_bad_requests_get_error_replies_and_service_keeps_running(
    bus: Bus, memory: BusMemory
) -> None:
    resp = await bus.nc.request(SearchMemory.subject, b'{"query": 5, "k": "x"}', timeout=5)
    assert b"invalid" in resp.data
    resp = await bus.nc.request(GetHistory.subject, b"not json", timeout=5)
    assert b"invalid" in resp.data
    empty = ImportTurns.model_construct(
        session_id="s", tenant_id="default", turns=[Turn(role="user", content="  ")]
    )
    with pytest.raises(RemoteError) as err:
        await bus.request(empty, ImportTurns, timeout=5)
    assert err.value.code == "invalid"
    assert await memory.history("default", "still-alive") == []


async def test_malformed_turn_event_is_parked_and_consuming_goes_on(
    bus: Bus, memory: BusMemory, indexed: Indexed
) -> None:
    await bus.js.publish(TurnStored.subject, b'{"session_id": 12}')
    session = f"s-{uuid.uuid4().hex[:8]}"
    await say(memory, indexed, session, [("still storing after bad input", "yes")])
    parked = await list_dead_letters(bus)
    assert any(p.subject == TurnStored.subject and b'"session_id": 12' in p.data for p in parked)
    assert len(await memory.history("default", session)) == 2


async def test_concurrent_searches(memory: BusMemory, indexed: Indexed) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    await say(
        memory, indexed, session, [(f"fact {i}: the code word is alpha{i}", "ok") for i in range(5)]
    )
    results = await asyncio.gather(
        *(
            memory.search("default", query=f"code word alpha{i}", session_id=session)
            for i in range(20)
        )
    )
    assert all(r.hits for r in results)
