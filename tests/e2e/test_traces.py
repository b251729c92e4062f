"""One trace per chat message, across every service it crosses, exported over OTLP."""

from __future__ import annotations

import asyncio
import uuid

from tests.e2e.conftest import Stack


async def test_one_trace_follows_a_message_through_every_service(stack: Stack) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
    body = {"message": "trace me please", "session_id": f"tr-{uuid.uuid4().hex[:8]}"}
    async with stack.http.post(f"{stack.url}/api/chat/support", json=body, headers=headers) as r:
        assert r.status == 200

    # every hop of the message, the JetStream usage consumer included
    wanted = {
        ("gateway", "POST /api/chat/{agent_id}"),
        ("agent-support", "handle chat.request.v1.support"),
        # a first message has no older turns to recall: memory is not searched, it stores the turn
        ("memory", "consume memory.turns.v1"),
        ("cost", "handle cost.authorize.v1"),
        ("cost", "consume cost.usage.recorded.v1"),
    }

    def complete() -> bool:
        """Every hop reported, and every span's parent is in the trace (or is ours)."""
        spans = stack.spans.trace(trace_id)
        ids = {s.span_id for s in spans} | {parent}
        names = {(s.service, s.name) for s in spans}
        return wanted <= names and all(s.parent_id in ids for s in spans)

    async with stack.spans.arrived:
        try:
            await asyncio.wait_for(stack.spans.arrived.wait_for(complete), 15)
        except TimeoutError:
            got = [(s.service, s.name, s.parent_id) for s in stack.spans.trace(trace_id)]
            raise AssertionError(f"incomplete trace: {got}") from None

    spans = stack.spans.trace(trace_id)
    assert len({s.span_id for s in spans}) == len(spans)  # no duplicated span ids
    usage_span = next(s for s in spans if s.name == "consume cost.usage.recorded.v1")
    assert usage_span.attributes.get("chatbus.agent") == ["support"], usage_span
    assert "chatbus.cost_usd" in usage_span.attributes
    llm_span = next(s for s in spans if s.name.startswith("chat "))
    assert llm_span.service == "agent-support"
    assert int(llm_span.attributes.get("gen_ai.usage.input_tokens", 0)) > 0  # type: ignore[call-overload]
    llm_call = stack.llm.requests_for("support")[-1]
    assert llm_call.headers.get("traceparent", "").split("-")[1:3] == [trace_id, llm_span.span_id]
