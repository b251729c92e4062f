"""Usage of concurrent messages shares JetStream writes, and still counts once per call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from chatbus.agent.ports import Authorization
from chatbus.contracts.chat import ChatRequest, Usage
from chatbus.contracts.cost import COST_STREAM

TODAY = datetime.now(UTC).date().isoformat()


async def test_concurrent_usage_is_counted_once_each_in_fewer_writes(start_cost, uid: str) -> None:
    world = await start_cost()
    tenant = f"t-{uid}"
    reqs = [
        ChatRequest(
            request_id=f"r-{uid}-{i}",
            agent="support",
            session_id=f"s-{uid}-{i}",
            message="hi",
            tenant_id=tenant,
        )
        for i in range(40)
    ]
    auth = Authorization(decision="allow", model="gpt-4o-mini")
    usage = Usage(prompt_tokens=100, completion_tokens=10)

    async def record(req: ChatRequest) -> None:
        await world.costs.record(req, auth, model="gpt-4o-mini", usage=usage, cached=False,
                                 counted=False)  # fmt: skip

    await record(reqs[0])  # the stream is known from now on: the rest may be grouped
    await asyncio.gather(*(record(r) for r in reqs[1:]))
    await asyncio.gather(*(record(r) for r in reqs[:10]))  # delivered again: counted once
    writes = (await world.bus.js.stream_info(COST_STREAM)).state.messages
    assert writes < 40
    rep = await world.wait_requests(40, tenant, TODAY)
    assert rep.total.requests == 40
    assert rep.total.prompt_tokens == 40 * 100
