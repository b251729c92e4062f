"""Killing the cost service mid-burst loses no usage event and counts none twice."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from chatbus.bus import Bus
from chatbus.contracts.cost import COST_STREAM
from chatbus.cost_client import BusCosts, ensure_cost_stream
from chatbus_cost.prices import PriceTable, usd
from chatbus_dev.testing import ServiceFactory

N = 2000


async def wait_for(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return True
        await asyncio.sleep(0.05)  # allowed: polling another process' eventually-consistent count
    return False


@pytest.mark.e2e
async def test_kill_during_a_burst_then_restart_totals_exact(
    service_factory: ServiceFactory, own_nats: str, make_event, uid: str
) -> None:
    service = service_factory.make(
        "chatbus_cost",
        NATS_URL=own_nats,
        REDIS_PREFIX=f"test:{uid}:",
        USAGE_ACK_WAIT_S="2",
        LOG_FORMAT="text",
    )
    await service.start()
    bus = await Bus.connect(own_nats, service="burst")
    costs = BusCosts(bus)
    await ensure_cost_stream(bus)
    today = datetime.now(UTC).date().isoformat()
    events = [
        make_event(i, tenant_id=uid, prompt_tokens=100 + i % 97, completion_tokens=i % 31)
        for i in range(N)
    ]
    prices = PriceTable()

    async def counted() -> int:
        rep = await costs.report(tenant_id=uid, from_date=today, to_date=today)
        return rep.total.requests

    async def burst() -> None:
        for ev in events:
            await costs.publish_usage(ev)
        # a retried publish of the same events under new JetStream ids: the consumer dedups
        for ev in events[:200]:
            await bus.js_publish(ev, msg_id=f"retry:{ev.event_id}")

    publisher = asyncio.create_task(burst())
    try:
        assert await wait_for(lambda: _at_least(counted, 300), 20), "service never counted"
        mid_burst = not publisher.done()
        service.kill()  # SIGKILL: no drain, in-flight events are neither acked nor finished
        assert mid_burst, "the burst finished before the kill; make N larger"
        await publisher
        await service.start()
        assert await wait_for(lambda: _at_least(counted, N), 30)

        async def drained() -> bool:
            info = await bus.js.consumer_info(COST_STREAM, "cost-usage")
            return info.num_pending == 0 and info.num_ack_pending == 0

        assert await wait_for(drained, 30)
        rep = await costs.report(tenant_id=uid, from_date=today, to_date=today)
    finally:
        service.kill()
        await bus.drain(timeout=2)
    assert rep.total.requests == N
    assert rep.total.prompt_tokens == sum(e.prompt_tokens for e in events)
    assert rep.total.completion_tokens == sum(e.completion_tokens for e in events)
    nusd = sum(prices.cost_nusd(e.model, e.prompt_tokens, e.completion_tokens) for e in events)
    assert rep.total.cost_usd == usd(nusd)


async def _at_least(counted, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await counted() >= n
