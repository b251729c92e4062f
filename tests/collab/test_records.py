"""Tool effects are real records, read through the gateway's records routes from their owner.

The gateway asks the agent services over the bus (``records.query.v1`` / ``records.get.v1``);
it never reads the agent runtime's keys.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chatbus.agent.events import CustomerNotes
from chatbus.bus import Bus
from chatbus.contracts.records import GetRecord, QueryRecords, RecordFound, RecordPage
from chatbus.errors import RemoteError
from chatbus.records_client import BusRecords
from chatbus_dev.offline_llm import Scripted
from chatbus_gateway.auth.caller import TENANT_ID
from chatbus_gateway.routes.records import setup_records_routes
from tests.collab.collab_harness import Crew, call

pytestmark = pytest.mark.timeout(90)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GATEWAY_SRC = Path(__file__).parents[2] / "services" / "gateway" / "src"


def records_app(bus: Bus) -> web.Application:
    @web.middleware
    async def tenant(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[TENANT_ID] = request.headers.get("X-Tenant", "default")  # the auth's job
        return await handler(request)

    app = web.Application(middlewares=[tenant])
    setup_records_routes(app, BusRecords(bus, timeout_s=5))
    return app


async def test_ticket_and_confirmed_invoice_are_visible_through_the_api_per_tenant(
    crew: Crew, redis: aioredis.Redis
) -> None:
    llm, support, sales = crew.llm, crew.support, crew.sales
    tenant, user, session = f"t{crew.uid}", f"u{crew.uid}", f"s{crew.uid}"
    me = {"tenant_id": tenant, "user_id": user}
    async with crew.running(support, sales, demo_data=f"{tenant}/{user}"):
        llm.push(
            call("open_ticket", title="Router drops the bus", description="since Monday",
                 priority="high", order_id="4473"),
            Scripted(content="I opened a ticket."),
            call("create_invoice", plan="team", seats=10, months=3),
            Scripted(content="Here is your draft."),
        )  # fmt: skip
        await crew.chat(support, "it is broken", session, **me)
        await crew.chat(sales, "bill me for team", session, **me)
        code = json.loads(crew.results(sales)[0])["confirmation_code"]
        llm.push(call("confirm_draft", code=code), Scripted(content="Issued."))
        await crew.chat(sales, f"yes, confirm {code}", session, **me)
        # Sales subscribes to support.ticket.opened.v1: it learns about the open ticket.
        notes = CustomerNotes(crew.records.redis)
        deadline = asyncio.get_running_loop().time() + 10
        while not (seen := await notes.all(tenant, user, session)):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)  # allowed: the event is consumed asynchronously
        assert "Router drops the bus" in seen[0]

        async with TestClient(TestServer(records_app(crew.bus))) as client:
            h = {"X-Tenant": tenant}
            r = await client.get(f"/api/tickets?session_id={session}", headers=h)
            assert r.status == 200
            body = await r.json()
            (ticket,) = body["tickets"]
            assert body["next_cursor"] is None
            assert ticket["title"] == "Router drops the bus" and ticket["status"] == "open"
            assert ticket["priority"] == "high" and ticket["user_id"] == user

            r = await client.get(f"/api/tickets/{ticket['id']}", headers=h)
            assert (await r.json())["order_id"] == "4473"
            mine = await client.get(f"/api/tickets/{ticket['id']}?user_id={user}", headers=h)
            theirs = await client.get(f"/api/tickets/{ticket['id']}?user_id=other", headers=h)
            assert mine.status == 200 and theirs.status == 404

            r = await client.get(f"/api/invoices?user_id={user}", headers=h)
            (invoice,) = (await r.json())["invoices"]
            assert invoice["amount"] == 450.0 and invoice["currency"] == "USD"
            assert invoice["status"] == "issued" and invoice["customer_id"] == user

            other = await client.get(f"/api/tickets?session_id={session}")  # another tenant
            assert (await other.json())["tickets"] == []
            missing = await client.get(f"/api/tickets/{ticket['id']}")
            assert missing.status == 404 and (await missing.json())["error"]["code"] == 404


async def test_pages_follow_the_cursor_and_bad_parameters_are_422_not_5xx(crew: Crew) -> None:
    tenant = f"t{crew.uid}"
    for i in range(7):  # the owner's store, as tools fill it
        await crew.records.put(tenant, "lead", f"L-{i}", {"company": f"c{i}"}, user_id="u1")
    async with crew.running(crew.support):
        async with TestClient(TestServer(records_app(crew.bus))) as client:
            h = {"X-Tenant": tenant}
            seen: list[str] = []
            cursor = ""
            for _ in range(5):
                r = await client.get(f"/api/leads?user_id=u1&limit=3{cursor}", headers=h)
                body = await r.json()
                seen += [lead["company"] for lead in body["leads"]]
                if body["next_cursor"] is None:
                    break
                cursor = f"&cursor={body['next_cursor']}"
            assert seen == [f"c{i}" for i in reversed(range(7))]  # newest first, each once

            for query, param in [
                ("limit=%C2%B2", "limit"),  # "²": a Unicode digit, not an integer
                ("limit=0", "limit"),
                ("limit=201", "limit"),
                ("limit=99999999999999999999", "limit"),
                ("user_id=" + "u" * 201, "user_id"),
                ("session_id=" + "s" * 201, "session_id"),
                ("cursor=%00not-a-cursor", "cursor"),
            ]:
                r = await client.get(f"/api/leads?{query}", headers=h)
                error = (await r.json())["error"]
                assert r.status == 422 and error["param"] == param, (query, error)
            r = await client.get("/api/leads/" + "x" * 5000, headers=h)
            assert r.status == 404


async def test_the_records_contract_answers_errors_and_the_gateway_503s_without_owner(
    crew: Crew,
) -> None:
    bus, tenant = crew.bus, f"t{crew.uid}"
    await crew.records.put(tenant, "ticket", "T-1", {"title": "x"}, user_id="u1")
    async with TestClient(TestServer(records_app(bus))) as client:
        r = await client.get("/api/tickets", headers={"X-Tenant": tenant})
        assert r.status == 503 and (await r.json())["error"]["type"] == "unavailable"
    async with crew.running(crew.support):
        found = await bus.request(
            GetRecord(tenant_id=tenant, kind="ticket", record_id="T-1"), RecordFound
        )
        assert found.record["title"] == "x"
        for ask in (
            GetRecord(tenant_id=tenant, kind="ticket", record_id="T-1", user_id="u2"),
            GetRecord(tenant_id="other", kind="ticket", record_id="T-1"),
        ):
            with pytest.raises(RemoteError) as missing:
                await bus.request(ask, RecordFound)
            assert missing.value.code == "not_found"
        with pytest.raises(RemoteError) as bad:  # a malformed request: an error reply
            await bus.request(
                QueryRecords.model_construct(tenant_id=tenant, kind="Tickets!", limit=0),
                RecordPage,
                QueryRecords.subject,
            )
        assert bad.value.code == "invalid"
        page = await bus.request(QueryRecords(tenant_id=tenant, kind="ticket"), RecordPage)
        assert [r["id"] for r in page.records] == ["T-1"]


def test_the_gateway_neither_imports_the_agent_runtime_nor_touches_its_keys() -> None:
    for source in GATEWAY_SRC.rglob("*.py"):
        text = source.read_text()
        assert not re.search(r"chatbus\.agent\b", text), source
        assert ":record:" not in text and ":records:" not in text, source
