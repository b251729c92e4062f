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

    wanted = {"gateway", "agent-support", "memory", "cost"}

    def services() -> set[str]:
        return {s.service for s in stack.spans.trace(trace_id)}

    async with stack.spans.arrived:
        await asyncio.wait_for(stack.spans.arrived.wait_for(lambda: wanted <= services()), 15)

    spans = stack.spans.trace(trace_id)
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id not in ids]
    assert {r.parent_id for r in roots} == {parent}, [(s.service, s.name) for s in roots]
    assert len(ids) == len(spans)  # no duplicated span ids
    llm_span = next(s for s in spans if s.name.startswith("chat "))
    assert llm_span.attributes.get("gen_ai.usage.input_tokens", 0) > 0  # type: ignore[operator]
    llm_call = stack.llm.requests_for("support")[-1]
    assert trace_id in llm_call.headers.get("traceparent", "")
