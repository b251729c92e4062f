"""A manipulated model floods its tools: hundreds of calls in one step, arguments nested
beyond what a parser takes. One customer message must not turn into hundreds of records and
events, and the turn is still answered.
"""

from __future__ import annotations

import pytest

from chatbus.agent.handler import MAX_TOOL_CALLS_PER_STEP
from chatbus_dev.offline_llm import Scripted
from tests.collab.collab_harness import Crew

pytestmark = pytest.mark.timeout(90)


async def test_one_model_step_runs_a_bounded_number_of_tool_calls(crew: Crew) -> None:
    support, tenant = crew.support, f"t{crew.uid}"
    flood = [
        {"name": "open_ticket", "arguments": {"title": f"Spam {i}", "description": "x"}}
        for i in range(300)
    ]
    async with crew.running(support):
        crew.llm.push(Scripted(tool_calls=flood), Scripted(content="Done."))
        reply = await crew.chat(support, "open a ticket", f"s{crew.uid}", tenant_id=tenant)
        assert reply.reply == "Done."
        results = crew.results(support)
    assert len(results) == 300  # every call id still gets its tool message
    refused = [r for r in results if r.startswith("Error: too many tool calls")]
    assert len(refused) == 300 - MAX_TOOL_CALLS_PER_STEP
    tickets = await crew.records.list(tenant, "ticket")
    assert len(tickets) == MAX_TOOL_CALLS_PER_STEP


async def test_arguments_nested_past_the_parser_are_a_tool_error_not_a_failed_turn(
    crew: Crew,
) -> None:
    support, tenant = crew.support, f"t{crew.uid}"
    deep = "[" * 200_000 + "]" * 200_000
    async with crew.running(support):
        crew.llm.push(
            Scripted(tool_calls=[{"name": "lookup_order", "arguments": deep}]),
            Scripted(content="Sorry, which order?"),
        )
        reply = await crew.chat(support, "order?", f"s{crew.uid}", tenant_id=tenant, user_id="u")
        assert reply.reply == "Sorry, which order?"
        (result,) = crew.results(support)
    assert result.startswith("Error: the arguments for lookup_order are not valid JSON")
