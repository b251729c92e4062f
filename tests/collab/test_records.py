"""Tool effects are real records, readable through the gateway's records routes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chatbus.agent.events import CustomerNotes
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus.offline_llm import OfflineLLM, Scripted
from chatbus_gateway.caller import TENANT_ID
from chatbus_gateway.records_routes import setup_records_routes
from tests.collab.collab_harness import agents, ask, call, pair

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def records_app(redis: aioredis.Redis) -> web.Application:
    @web.middleware
    async def tenant(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[TENANT_ID] = request.headers.get("X-Tenant", "default")  # the auth's job
        return await handler(request)

    app = web.Application(middlewares=[tenant])
    setup_records_routes(app, redis)
    return app


async def test_ticket_and_invoice_are_visible_through_the_api_per_tenant(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    support, sales = pair(uid)
    tenant, user, session = f"t{uid}", f"u{uid}", f"s{uid}"
    async with agents([support, sales], nats_url, redis_url, url):
        llm.push(
            call("open_ticket", title="Router drops the bus", description="since Monday",
                 priority="high", order_id="4473"),
            Scripted(content="I opened a ticket."),
            call("create_invoice", plan="team", seats=10, billing_email="ada@acme.test",
                 months=3),
            Scripted(content="Invoice sent."),
        )  # fmt: skip
        for agent, text in ((support, "it is broken"), (sales, "bill me for team")):
            await bus.request(
                ask(agent, text, session, tenant_id=tenant, user_id=user),
                ChatReply,
                ChatRequest.subject_for(agent.id),
            )
        # Sales subscribes to support.ticket.opened.v1: it learns about the open ticket.
        notes = CustomerNotes(redis)
        deadline = asyncio.get_running_loop().time() + 10
        while not (seen := await notes.all(tenant, user, session)):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)  # allowed: the event is consumed asynchronously
        assert "Router drops the bus" in seen[0]

    async with TestClient(TestServer(records_app(redis))) as client:
        r = await client.get(f"/api/tickets?session_id={session}", headers={"X-Tenant": tenant})
        assert r.status == 200
        (ticket,) = (await r.json())["tickets"]
        assert ticket["title"] == "Router drops the bus" and ticket["status"] == "open"
        assert ticket["priority"] == "high" and ticket["user_id"] == user

        r = await client.get(f"/api/tickets/{ticket['id']}", headers={"X-Tenant": tenant})
        assert (await r.json())["order_id"] == "4473"

        r = await client.get(f"/api/invoices?user_id={user}", headers={"X-Tenant": tenant})
        (invoice,) = (await r.json())["invoices"]
        assert invoice["amount_usd"] == 450.0 and invoice["status"] == "issued"

        other = await client.get(f"/api/tickets?session_id={session}")  # another tenant
        assert (await other.json())["tickets"] == []
        missing = await client.get(f"/api/tickets/{ticket['id']}")
        assert missing.status == 404
        bad = await client.get("/api/leads?limit=0", headers={"X-Tenant": tenant})
        assert bad.status == 422 and (await bad.json())["error"]["param"] == "limit"
