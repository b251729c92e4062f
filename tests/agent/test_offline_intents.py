"""The offline model's rules, on the real agents' prompts and tools (no processes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent_sales.persona import SALES
from agent_support.persona import SUPPORT
from chatbus.agent.handoff import transfer_definitions
from chatbus.agent.spec import AgentSpec
from chatbus_dev.offline_intents import answer_after_tools, tool_calls_for


def body(spec: AgentSpec, message: str) -> dict[str, Any]:
    """What the agent sends the model for ``message``: its prompt, the message, its tools."""
    tools = [t.definition() for t in spec.tools] + transfer_definitions(spec.id, spec.handoffs)
    return {
        "messages": [
            {"role": "system", "content": spec.system_prompt},
            {"role": "user", "content": message},
        ],
        "tools": tools,
    }


def called(spec: AgentSpec, message: str) -> list[tuple[str, dict[str, Any]]]:
    calls = tool_calls_for(body(spec, message)) or []
    return [(c["function"]["name"], c["function"]["arguments"]) for c in calls]


@pytest.mark.parametrize(
    "message",
    [
        "I want to buy the enterprise plan, please transfer me to sales",
        "I want to buy the enterprise plan",
        "How much does an upgrade cost?",
        "Can I talk to sales?",
    ],
)
def test_buyers_go_from_support_to_sales(message: str) -> None:
    assert [name for name, _ in called(SUPPORT, message)] == ["transfer_to_sales"]


def test_order_problems_go_from_sales_back_to_support_and_sales_keeps_buyers() -> None:
    assert called(SALES, "I have a problem with my order")[0][0] == "transfer_to_support"
    assert called(SALES, "I want to buy the enterprise plan, transfer me to sales") == []


def test_an_order_number_is_looked_up_and_a_problem_opens_a_ticket() -> None:
    assert called(SUPPORT, "Where is my order 4471?") == [("lookup_order", {"order_id": "4471"})]
    calls = dict(called(SUPPORT, "Order 4473 arrived broken, please open a ticket"))
    assert calls["lookup_order"] == {"order_id": "4473"}
    assert calls["open_ticket"]["order_id"] == "4473"
    assert calls["open_ticket"]["title"].startswith("Order 4473 arrived broken")


def test_plain_messages_and_agents_without_tools_get_words() -> None:
    assert called(SUPPORT, "Hello!") == []
    bare = AgentSpec(id="bare", label="Bare", description="d", system_prompt="Be brief.")
    assert called(bare, "I want to buy the enterprise plan, order 4471") == []


def test_after_the_tools_the_reply_says_what_they_returned_and_what_it_is() -> None:
    messages = [
        *body(SUPPORT, "Where is my order 4471?")["messages"],
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "function": {"name": "lookup_order", "arguments": "{}"}}],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "shipped", "tracking": "JD1", "created_at": 1.0}),
        },
    ]
    reply = answer_after_tools(messages, "support")
    assert reply is not None
    assert reply.startswith("[offline model] support here")
    assert "lookup_order: status shipped, tracking JD1" in reply and "created_at" not in reply
    assert answer_after_tools(messages[:2], "support") is None
