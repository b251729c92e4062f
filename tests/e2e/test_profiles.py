"""User profiles through the whole stack: what a user says in one chat, every agent knows later."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.e2e.conftest import Stack


async def profile_of(stack: Stack, user: str, key: str) -> dict[str, Any]:
    """Memory stores turns asynchronously (JetStream): wait until the profile shows ``key``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        async with stack.http.get(f"{stack.url}/api/users/{user}/profile") as r:
            assert r.status == 200
            body: dict[str, Any] = await r.json()
        if key in body["profile"] or loop.time() > deadline:
            return body
        await asyncio.sleep(0.1)  # allowed: polling an eventually-consistent store


async def test_a_fact_from_one_session_reaches_the_model_in_the_next(stack: Stack) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    status, _ = await stack.chat(
        "support", "Hi, my name is Ana and I live in Berlin.", f"s1-{user}", user_id=user
    )
    assert status == 200
    body = await profile_of(stack, user, "city")
    assert body["profile"] == {"name": "Ana", "city": "Berlin"}

    status, _ = await stack.chat("sales", "Do you deliver to my city?", f"s2-{user}", user_id=user)
    assert status == 200
    sent = stack.llm.requests_for("sales")[-1].messages
    system = " ".join(str(m["content"]) for m in sent if m["role"] == "system")
    assert "city: Berlin" in system and "name: Ana" in system

    # the user moves: the profile follows, the old city is history, agents see the new one
    status, _ = await stack.chat(
        "support", "I moved to Paris last week.", f"s3-{user}", user_id=user
    )
    assert status == 200
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (await profile_of(stack, user, "city"))["profile"]["city"] != "Paris":
        assert loop.time() < deadline, "the move never reached the profile"
        await asyncio.sleep(0.1)  # allowed: polling an eventually-consistent store
    status, _ = await stack.chat("support", "What is the weather like?", f"s4-{user}", user_id=user)
    sent = stack.llm.requests_for("support")[-1].messages
    system = " ".join(str(m["content"]) for m in sent if m["role"] == "system")
    assert "city: Paris" in system and "city: Berlin" not in system

    # an operator's edit is what agents see next; forgetting the user removes it all
    async with stack.http.patch(
        f"{stack.url}/api/users/{user}/profile", json={"plan": "enterprise", "name": None}
    ) as r:
        assert r.status == 200
        assert (await r.json())["profile"] == {"city": "Paris", "plan": "enterprise"}
    async with stack.http.delete(f"{stack.url}/api/users/{user}") as r:
        assert r.status == 200
    async with stack.http.get(f"{stack.url}/api/users/{user}/profile") as r:
        assert (await r.json())["profile"] == {}
    status, _ = await stack.chat("sales", "Hello again", f"s5-{user}", user_id=user)
    sent = stack.llm.requests_for("sales")[-1].messages
    assert not any("About this user" in str(m["content"]) for m in sent)
