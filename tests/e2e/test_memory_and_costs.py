"""What memory, budgets and the response cache do for a user, through the gateway."""

from __future__ import annotations

import asyncio
import uuid

from chatbus.contracts.forget import FORGET_OWNERS
from tests.e2e.conftest import Stack


def sid() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


async def stored_turns(stack: Stack, session: str, at_least: int) -> list[dict[str, object]]:
    """Memory stores asynchronously (JetStream); wait until the history shows the turns."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        async with stack.http.get(f"{stack.url}/api/sessions/{session}/messages") as r:
            assert r.status == 200
            body = await r.json()
        turns = body["messages"] if isinstance(body, dict) else body
        if len(turns) >= at_least or loop.time() > deadline:
            return list(turns)
        await asyncio.sleep(0.1)  # allowed: polling an eventually-consistent store


async def test_an_early_fact_is_recalled_many_turns_later(stack: Stack) -> None:
    session = sid()
    status, _ = await stack.chat(
        "support", "My order number is 4471 and my dog is called Biscuit.", session
    )
    assert status == 200
    fillers = [
        "Can you tell me about shipping times?",
        "Do you ship to Canada?",
        "What payment methods do you take?",
        "Is there a warranty?",
        "How do returns work?",
        "Can I change my address?",
        "Do you have gift cards?",
        "What are your opening hours?",
        "Is there a phone number?",
        "Thanks so far.",
    ]
    for text in fillers:
        status, _ = await stack.chat("support", text, session)
        assert status == 200
    turns = await stored_turns(stack, session, 2 * (len(fillers) + 1))
    assert len(turns) >= 2 * (len(fillers) + 1)

    status, _ = await stack.chat("support", "What is my dog called?", session)
    assert status == 200
    sent = stack.llm.requests_for("support")[-1].messages
    recent = [m for m in sent if m["role"] in ("user", "assistant")]
    assert not any("Biscuit" in str(m["content"]) for m in recent)  # out of the recent window
    recalled = " ".join(str(m["content"]) for m in sent if m["role"] == "system")
    assert "Biscuit" in recalled


async def test_other_sessions_never_see_the_fact(stack: Stack) -> None:
    mine, other = sid(), sid()
    await stack.chat("support", "My secret code word is pomegranate.", mine)
    await stored_turns(stack, mine, 2)
    status, _ = await stack.chat("support", "What is my secret code word?", other)
    assert status == 200
    assert "pomegranate" not in stack.llm.requests_for("support")[-1].prompt_text


async def test_forgetting_a_session_removes_history_and_recall(stack: Stack) -> None:
    session = sid()
    await stack.chat("support", "Remember the word zanzibar.", session)
    await stored_turns(stack, session, 2)
    async with stack.http.delete(f"{stack.url}/api/sessions/{session}") as r:
        forgotten = await r.json()
        assert r.status == 200, forgotten  # every owner's process confirmed in time
    assert forgotten["confirmed"] == sorted(FORGET_OWNERS) and forgotten["pending"] == []
    turns = await stored_turns(stack, session, 0)
    assert turns == []
    await stack.chat("support", "Which word did I ask you to remember?", session)
    assert "zanzibar" not in stack.llm.requests_for("support")[-1].prompt_text


async def test_a_repeated_question_is_answered_from_the_cache(stack: Stack) -> None:
    question = f"What are the opening hours of shop {uuid.uuid4().hex[:6]}?"
    status, first = await stack.chat("sales", question, sid())
    assert status == 200
    calls = stack.llm.calls
    status, second = await stack.chat("sales", question, sid())
    assert status == 200
    assert stack.llm.calls == calls  # no second LLM call
    assert second["cached"] is True
    assert second["reply"] == first["reply"]


async def test_a_user_past_the_hard_budget_gets_the_template_without_an_llm_call(
    stack: Stack,
) -> None:
    calls = stack.llm.calls
    status, body = await stack.chat("support", "Hello, I need help", sid(), user_id="broke-user")
    assert status == 200
    assert body["degraded"] == "budget"
    assert "budget" in str(body["reply"]).lower()
    assert stack.llm.calls == calls
