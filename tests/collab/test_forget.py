"""Forgetting over the bus: every owner deletes only its own state and confirms; an owner
that is down gets the event when it comes back, and the status says pending until then."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chatbus.agent.events import CustomerNotes
from chatbus.agent.history import history_key
from chatbus.bus import Bus
from chatbus.contracts.chat import Turn
from chatbus.contracts.forget import FORGET_OWNERS
from chatbus.forget import ensure_forget_stream, serve_forget
from chatbus.memory_client import BusMemory
from chatbus.redis_link import RedisLink
from chatbus_dev.offline_llm import Scripted
from chatbus_gateway.auth.caller import TENANT_ID
from chatbus_gateway.flow.order import SessionOrder
from chatbus_gateway.peers.forget import ForgetDesk, gateway_forgetter
from chatbus_gateway.routes.forget import setup_forget_routes
from tests.collab.collab_harness import Crew, call
from tests.memory.conftest import memory_settings, running_memory


@asynccontextmanager
async def gateway_api(bus: Bus, link: RedisLink, tenant: str, wait_s: float) -> AsyncIterator[Any]:
    """The gateway's forget routes and its own forget consumer, for ``tenant``."""

    @web.middleware
    async def as_tenant(request: web.Request, handler: Any) -> web.StreamResponse:
        request[TENANT_ID] = request.headers.get("X-Tenant", tenant)
        return await handler(request)

    await ensure_forget_stream(bus)
    serve_forget(bus, "gateway", gateway_forgetter(SessionOrder(link, bus, "gw:", 45), link))
    app = web.Application(middlewares=[as_tenant])
    setup_forget_routes(app, ForgetDesk(bus, wait_s=wait_s))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_forgetting_a_user_removes_every_owners_state_and_all_confirm(
    crew: Crew, bus: Bus, redis: aioredis.Redis, redis_link: RedisLink, tmp_path: Path
) -> None:
    llm, support, sales = crew.llm, crew.support, crew.sales
    tenant, user, session = f"t{crew.uid}", f"u{crew.uid}", f"s{crew.uid}"
    other = f"other{crew.uid}"
    memory = BusMemory(bus, timeout=10)
    settings = memory_settings(crew.nats_url, crew.redis_url, tmp_path / "memory")
    async with (
        running_memory(settings),
        crew.running(support, sales, demo_data=f"{tenant}/{user}"),
        gateway_api(bus, redis_link, tenant, wait_s=20) as api,
    ):
        llm.push(
            call("open_ticket", title="Router drops the bus", description="since Monday",
                 priority="high", order_id="4473"),
            Scripted(content="I opened a ticket."),
            Scripted(content="Hello other."),
        )  # fmt: skip
        await crew.chat(support, "it is broken", session, tenant_id=tenant, user_id=user)
        await crew.chat(support, "hi", other, tenant_id=tenant, user_id=f"x{crew.uid}")
        await memory.import_turns(tenant, session, [Turn(role="user", content="I live in Porto")],
                                  user_id=user)  # fmt: skip
        notes = CustomerNotes(redis_link)
        deadline = asyncio.get_running_loop().time() + 20
        while not await notes.all(tenant, user, session):  # sales learns of the ticket
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)  # allowed: the event is consumed asynchronously
        (ticket, *_) = await crew.records.list(tenant, "ticket", user_id=user)
        assert await redis.exists(history_key(tenant, session))

        r = await api.delete(f"/api/users/{user}")
        body = await r.json()
        assert r.status == 200, body
        assert body["confirmed"] == sorted(FORGET_OWNERS) and body["pending"] == []
        assert session in body["sessions"] and body["deleted"] > 0

        assert not await redis.exists(history_key(tenant, session))
        assert await notes.all(tenant, user, session) == []
        assert await crew.records.get(tenant, "ticket", ticket["id"]) is None
        assert await crew.records.list(tenant, "ticket") == []
        assert await memory.history(tenant, session) == []
        assert await redis.exists(history_key(tenant, other))  # someone else's: kept
        status = await api.get(body["status_url"])
        assert (await status.json())["status"] == "done"
        assert (await api.get(body["status_url"], headers={"X-Tenant": "intruder"})).status == 404


async def test_an_owner_that_is_down_forgets_when_it_comes_back(
    crew: Crew, bus: Bus, redis_link: RedisLink, tmp_path: Path
) -> None:
    tenant, session = f"t{crew.uid}", f"s-{uuid.uuid4().hex[:8]}"
    memory = BusMemory(bus, timeout=10)
    settings = memory_settings(crew.nats_url, crew.redis_url, tmp_path / "memory")
    async with running_memory(settings):
        await memory.import_turns(tenant, session, [Turn(role="user", content="my PIN is 1234")])
    async with crew.running(crew.support), gateway_api(bus, redis_link, tenant, 2) as api:
        r = await api.delete(f"/api/sessions/{session}")  # memory is down
        body = await r.json()
        assert r.status == 202, body
        assert body["pending"] == ["memory"] and body["confirmed"] == ["agent", "gateway"]
        status = await (await api.get(body["status_url"])).json()
        assert status["status"] == "pending"

        async with running_memory(settings):  # back: its durable consumer has the event
            deadline = asyncio.get_running_loop().time() + 60
            while status["status"] != "done":
                assert asyncio.get_running_loop().time() < deadline, status
                await asyncio.sleep(0.1)  # allowed: a bounded poll of the status URL
                status = await (await api.get(body["status_url"])).json()
            assert status["confirmed"] == sorted(FORGET_OWNERS)
            assert await memory.history(tenant, session) == []
