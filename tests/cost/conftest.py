"""Fixtures for the cost service: its own NATS server per test, the service in-process."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from chatbus.bus import Bus
from chatbus.contracts.cost import UsageRecorded, UsageReport
from chatbus.cost_client import BusCosts
from chatbus.runtime import Runtime, serve
from chatbus_cost.__main__ import CostSettings, make_wire
from chatbus_dev.nats_server import start_nats


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[str]:
    """A NATS server for this test alone: the cost subjects and the COST stream are fixed."""
    server = start_nats(tmp_path / "nats")
    yield server.url
    server.stop()


@dataclass
class CostWorld:
    """A running cost service and a client bus next to it."""

    settings: CostSettings
    rt: Runtime
    bus: Bus
    costs: BusCosts
    redis: aioredis.Redis
    stopped: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Stop this cost service (as a deploy would, before starting the next)."""
        assert self.stopped is not None and self.task is not None
        self.stopped.set()
        await asyncio.wait_for(self.task, 20)

    @property
    def prefix(self) -> str:
        return self.settings.redis_prefix

    async def publish(self, event: UsageRecorded, msg_id: str | None = None) -> None:
        await self.bus.js_publish(event, msg_id=msg_id or event.event_id)

    async def report(self, tenant: str | None = "default", **kw: Any) -> UsageReport:
        return await self.costs.report(tenant_id=tenant, **kw)

    async def wait_requests(
        self, n: int, tenant: str, day: str, timeout: float = 10
    ) -> UsageReport:
        """Poll the report until it counts ``n`` requests for ``tenant`` on ``day``."""
        deadline = time.monotonic() + timeout
        while True:
            rep = await self.report(tenant, from_date=day, to_date=day)
            if rep.total.requests >= n or time.monotonic() > deadline:
                return rep
            await asyncio.sleep(0.02)  # allowed: the consumer counts events asynchronously


StartCost = Callable[..., Awaitable[CostWorld]]


@pytest_asyncio.fixture
async def start_cost(own_nats: str, redis_url: str, uid: str) -> AsyncIterator[StartCost]:
    """``await start_cost(budgets=[...], **settings)`` runs a cost service for this test."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    clients: list[tuple[Bus, aioredis.Redis]] = []
    runtimes: list[Runtime] = []

    async def start(budgets: list[dict[str, Any]] | None = None, **overrides: Any) -> CostWorld:
        import json

        values: dict[str, Any] = {
            "nats_url": own_nats,
            "redis_url": redis_url,
            "port": 0,
            "host": "127.0.0.1",
            "log_format": "text",
            "redis_prefix": f"test:{uid}:",
            "budgets_json": json.dumps(budgets or []),
        }
        values.update(overrides)
        settings = CostSettings(**values)
        stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(settings, make_wire(settings), stop=stop, started=ready.set_result)
        )
        stops.append((stop, task))
        rt = await asyncio.wait_for(ready, 15)
        runtimes.append(rt)
        bus = await Bus.connect(own_nats, service="test-client")
        client = aioredis.Redis.from_url(redis_url)
        clients.append((bus, client))
        return CostWorld(settings, rt, bus, BusCosts(bus), client, stop, task)

    yield start
    for bus, client in clients:
        await bus.drain(timeout=5)
        await client.aclose()
    for stop, task in stops:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 20)


MakeEvent = Callable[..., UsageRecorded]


@pytest.fixture
def make_event(uid: str) -> MakeEvent:
    """``make_event(n, **fields)``: a usage event with sensible defaults; ``n`` makes it unique."""
    return functools.partial(_event, uid)


def _event(uid: str, n: int = 0, **kw: Any) -> UsageRecorded:
    values: dict[str, Any] = {
        "event_id": f"{uid}:{n}",
        "request_id": f"r-{uid}-{n}",
        "tenant_id": "default",
        "user_id": f"u-{uid}",
        "agent": "support",
        "session_id": f"s-{uid}",
        "model": "gpt-4o-mini",
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "ts": time.time(),
    }
    values.update(kw)
    return UsageRecorded(**values)
