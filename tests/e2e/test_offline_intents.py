"""Without an API key, the offline model shows every headline feature through the real machinery.

The stack's model runs with ``intents`` on, as ``chatbus up`` runs it: plain requests become
real tool calls (handoff, order lookup, ticket), carried out by the agents over the bus.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import DEMO_USER, Stack
from tests.e2e.test_memory_and_costs import sid


@pytest.fixture
def offline(stack: Stack) -> Iterator[Stack]:
    stack.llm.intents = True
    try:
        yield stack
    finally:
        stack.llm.intents = False


async def test_a_buyer_is_handed_from_support_to_sales(offline: Stack) -> None:
    session = sid()
    status, body = await offline.chat(
        "support", "I want to buy the enterprise plan, please transfer me to sales", session
    )
    assert status == 200, body
    assert body["agent"] == "sales" and body["handoff_from"] == "support"
    assert str(body["reply"]).startswith("[offline model] sales here")

    # The session stays with sales; an order problem goes back to support.
    status, body = await offline.chat("support", "What does the team plan cost?", session)
    assert status == 200 and body["agent"] == "sales"
    status, body = await offline.chat(
        "sales", "I have a problem with my order, it never arrived", session
    )
    assert status == 200 and body["agent"] == "support" and body["handoff_from"] == "sales"


async def test_an_order_number_is_looked_up_for_its_owner(offline: Stack) -> None:
    status, body = await offline.chat(
        "support", "Where is my order 4471?", sid(), user_id=DEMO_USER
    )
    assert status == 200, body
    reply = str(body["reply"])
    assert "[offline model]" in reply and "lookup_order" in reply
    assert "shipped" in reply and "JD014600006281" in reply

    # Someone else's order number finds nothing.
    status, body = await offline.chat("support", "Where is my order 4471?", sid(), user_id="eve")
    assert status == 200 and "JD014600006281" not in str(body["reply"])


async def test_a_problem_opens_a_ticket_the_api_lists(offline: Stack) -> None:
    session = sid()
    status, body = await offline.chat(
        "support", "My hardware key is broken, please open a ticket", session, user_id=DEMO_USER
    )
    assert status == 200, body
    reply = str(body["reply"])
    assert "open_ticket" in reply and "ticket_id T-" in reply
    ticket_id = reply.split("ticket_id ", 1)[1].split(",")[0]
    async with offline.http.get(f"{offline.url}/api/tickets", params={"session_id": session}) as r:
        listed = await r.json()
    assert r.status == 200, listed
    assert ticket_id in str(listed)
