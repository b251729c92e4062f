"""Fixtures of the adversarial suite: the gateway test harness, two tenants, real memory.

The gateway runs in-process (``tests/gateway`` harness) with auth on; every attack goes over
real HTTP to it, with real NATS and Redis behind. The only fake is the language model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chatbus.agent.forget import AgentForgetter
from chatbus.agent.records import RecordStore
from chatbus.agent.records_service import RecordsResponder
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest, Turn
from chatbus.forget import serve_forget
from chatbus.memory_client import BusMemory
from chatbus.redis_link import RedisLink
from chatbus.runtime import Runtime
from chatbus_cost.__main__ import CostSettings
from chatbus_cost.__main__ import make_wire as make_cost_wire
from chatbus_dev.testing import serving
from chatbus_gateway.auth.keys import KeyStore
from tests.gateway.conftest import agent, callbacks, gateway, http, start_gateway
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import StartGateway
from tests.memory.conftest import memory_settings, running_memory

__all__ = ["agent", "callbacks", "gateway", "http", "start_gateway"]

ADMIN_KEY = "adm-" + "x" * 40


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest_asyncio.fixture
async def tenants(redis_url: str, uid: str) -> tuple[Tenant, Tenant]:
    """Two tenants with one API key each, in the gateway harness's Redis prefix."""
    client = RedisLink(redis_url)
    try:
        store = KeyStore(client, f"gwtest:{uid}:")
        a, _ = await store.create(f"ta-{uid}")
        b, _ = await store.create(f"tb-{uid}")
    finally:
        await client.close()
    return Tenant(f"ta-{uid}", a), Tenant(f"tb-{uid}", b)


@pytest_asyncio.fixture(scope="module")
async def memory_rt(
    nats_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runtime]:
    """The real memory service, in-process, for the routes and agents that use it."""
    settings = memory_settings(nats_url, redis_url, Path(tmp_path_factory.mktemp("memory")))
    async with running_memory(settings) as rt:
        yield rt


class RememberingAgent(StubAgent):
    """The stub agent that also stores each exchange in memory, as the agent runtime does."""

    memory: BusMemory | None = None

    async def answer(self, req: ChatRequest) -> ChatReply:
        reply = await super().answer(req)
        assert self.memory is not None
        turns = [
            Turn(role="user", content=req.message),
            Turn(role="assistant", content=reply.reply, agent=self.agent),
        ]
        await self.memory.remember(req, turns)
        return reply


@pytest_asyncio.fixture
async def remembering_agent(
    bus: Bus, fake_llm: tuple[Any, str], uid: str, memory_rt: Runtime
) -> AsyncIterator[RememberingAgent]:
    _, url = fake_llm
    stub = RememberingAgent(bus, f"mem-{uid}", url, label="Memory")
    stub.memory = BusMemory(bus, timeout=10)
    await stub.start()
    yield stub
    await stub.close()


@pytest_asyncio.fixture(scope="module")
async def cost_rt(
    nats_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runtime]:
    """The real cost service, in-process, behind ``/api/usage``."""
    settings = CostSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        port=0,
        host="127.0.0.1",
        log_format="text",
        redis_prefix=f"sec:{tmp_path_factory.mktemp('cost').name}:",
    )
    async with serving(settings, make_cost_wire(settings)) as service:
        yield service.rt


@pytest_asyncio.fixture
async def records_owner(bus: Bus, redis_link: RedisLink) -> RecordStore:
    """The agent runtime's state, as every agent service runs it: records over the bus
    (``records.*.v1``) and its share of forgetting (so a DELETE hears from every owner)."""
    store = RecordStore(redis_link)
    await RecordsResponder(store).subscribe(bus)
    serve_forget(bus, "agent", AgentForgetter(redis_link).forget)
    return store


@dataclass
class Stack:
    """A gateway with auth on, two tenants, the admin key, memory and cost behind it."""

    url: str
    a: Tenant
    b: Tenant
    agent: str
    records: RecordStore

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}", "X-Tenant-Id": self.a.name}


@pytest_asyncio.fixture
async def stack(
    start_gateway: StartGateway,
    tenants: tuple[Tenant, Tenant],
    remembering_agent: RememberingAgent,
    memory_rt: Runtime,
    cost_rt: Runtime,
    records_owner: RecordStore,
) -> Stack:
    gw = await start_gateway(
        auth="on",
        admin_key=ADMIN_KEY,
        rate_ip_per_min=0,
        rate_key_per_min=0,
        rate_session_per_min=0,
        rate_user_per_min=0,
        request_timeout_s=5,
    )
    return Stack(gw.url, tenants[0], tenants[1], remembering_agent.agent, records_owner)
