"""When the agent runtime searches long-term memory: what Redis says the session's past is.

Real Redis (the runtime's own keys): a new session holds nothing and is never searched; an
imported transcript, an expired history or a session longer than the prompt's window is.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from chatbus.agent.events import CustomerNotes
from chatbus.agent.forget import AgentForgetter
from chatbus.agent.history import RedisHistory, history_key, remembered_key
from chatbus.agent.session_state import RedisSessionReader
from chatbus.contracts.chat import ChatRequest, Turn
from chatbus.contracts.forget import ForgetRequested
from chatbus.redis_link import RedisLink

RECENT = 4


def request(session: str, user: str | None = None, tenant: str = "t") -> ChatRequest:
    return ChatRequest(
        request_id=uuid.uuid4().hex,
        agent="support",
        session_id=session,
        message="where is my order?",
        user_id=user,
        tenant_id=tenant,
    )


def exchange(i: int) -> list[Turn]:
    return [Turn(role="user", content=f"message {i}"), Turn(role="assistant", content="ok")]


def parts(redis_link: RedisLink) -> tuple[RedisHistory, RedisSessionReader]:
    history = RedisHistory(redis_link, remembered_ttl_s=86400)
    # everything else the reader fetches in the same pipeline too (replies are read in order)
    notes = CustomerNotes(redis_link)
    reader = RedisSessionReader(
        redis_link, notes=notes, with_route=True, with_first_step=True, remembered=True
    )
    return history, reader


async def test_a_new_session_has_no_past_until_it_outgrows_the_prompt(
    redis_link: RedisLink, uid: str
) -> None:
    history, reader = parts(redis_link)
    session = f"new-{uid}"
    state = await reader.load(request(session), RECENT)
    assert not state.older and state.recent == []
    await history.append("t", session, exchange(0))
    await history.append("t", session, exchange(1))
    assert not (await reader.load(request(session), RECENT)).older  # all four in the prompt
    await history.append("t", session, exchange(2))
    assert (await reader.load(request(session), RECENT)).older
    user = f"u-{uid}"
    for i in range(6):
        await history.append("t", f"long-{uid}", exchange(i), user)
    state = await reader.load(request(f"long-{uid}", user), RECENT)
    assert state.older and state.user_older and state.notes == []


async def test_an_imported_or_expired_past_is_searched(
    redis_link: RedisLink, redis: aioredis.Redis, uid: str
) -> None:
    history, reader = parts(redis_link)
    imported, expired = f"imp-{uid}", f"exp-{uid}"
    await history.note_imported("t", imported, None, 40)
    assert (await reader.load(request(imported), RECENT)).older
    await history.append("t", imported, exchange(0))
    assert (await reader.load(request(imported), RECENT)).older  # still: 42 turns, 2 shown

    await history.append("t", expired, exchange(0))
    await redis.delete(history_key("t", expired))  # the short-term history expired
    state = await reader.load(request(expired), RECENT)
    assert state.older and state.recent == []
    await history.append("t", expired, exchange(1))  # the session goes on after a long pause
    assert (await reader.load(request(expired), RECENT)).older


async def test_a_known_users_new_session_has_a_user_wide_past(
    redis_link: RedisLink, uid: str
) -> None:
    history, reader = parts(redis_link)
    user, stranger = f"ada-{uid}", f"bob-{uid}"
    assert not (await reader.load(request(f"a1-{uid}", user), RECENT)).user_older
    await history.append("t", f"a1-{uid}", exchange(0), user)
    state = await reader.load(request(f"a1-{uid}", user), RECENT)
    assert not state.user_older  # their only turns are in this prompt
    state = await reader.load(request(f"a2-{uid}", user), RECENT)
    assert state.user_older and not state.older  # another session of theirs is in memory
    assert not (await reader.load(request(f"b1-{uid}", stranger), RECENT)).user_older


async def test_forgetting_clears_what_the_runtime_knows_of_memory(
    redis_link: RedisLink, redis: aioredis.Redis, uid: str
) -> None:
    history, reader = parts(redis_link)
    user = f"cy-{uid}"
    await history.append("t", f"c1-{uid}", exchange(0), user)
    await history.note_imported("t", f"c2-{uid}", user, 10)
    forget = ForgetRequested(forget_id=f"f{uid}", tenant_id="t", user_id=user)
    await AgentForgetter(redis_link).forget(forget)
    assert not await redis.keys(f"agent:t:*{uid}*")
    state = await reader.load(request(f"c3-{uid}", user), RECENT)
    assert not state.older and not state.user_older
    await history.note_imported("t", f"c4-{uid}", None, 3)
    await AgentForgetter(redis_link).forget(
        ForgetRequested(forget_id=f"g{uid}", tenant_id="t", session_id=f"c4-{uid}")
    )
    assert not await redis.exists(remembered_key("t", f"c4-{uid}"))
