"""A session's history lists every question before its answer, turn after turn."""

from __future__ import annotations

from itertools import pairwise

from tests.e2e.conftest import Stack
from tests.e2e.test_memory_and_costs import sid, stored_turns

TURNS = 20


async def test_history_lists_each_question_before_its_answer_in_sending_order(
    stack: Stack,
) -> None:
    session = sid()
    replies = []
    for i in range(TURNS):
        status, body = await stack.chat("support", f"question number {i}", session)
        assert status == 200, body
        replies.append(body["reply"])

    turns = await stored_turns(stack, session, 2 * TURNS)

    assert [t["role"] for t in turns] == ["user", "assistant"] * TURNS
    assert [t["content"] for t in turns[0::2]] == [f"question number {i}" for i in range(TURNS)]
    assert [t["content"] for t in turns[1::2]] == replies
    times = [float(str(t["created_at"])) for t in turns]
    assert all(a < b for a, b in pairwise(times)), times
