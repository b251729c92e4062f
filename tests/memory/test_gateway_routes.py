"""The gateway's memory routes on a small app, against the real memory service over the bus."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chatbus.bus import Bus
from chatbus.forget import ensure_forget_stream
from chatbus.memory_client import BusMemory
from chatbus.runtime import Runtime
from chatbus_gateway.auth.caller import TENANT_ID
from chatbus_gateway.peers.forget import ForgetDesk
from chatbus_gateway.routes.forget import setup_forget_routes
from chatbus_gateway.routes.memory import Bounds, setup_memory_routes
from chatbus_gateway.routes.profile import setup_profile_routes

from .conftest import memory_settings, running_memory


@pytest_asyncio.fixture(scope="module")
async def memory_rt(
    nats_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runtime]:
    settings = memory_settings(nats_url, redis_url, tmp_path_factory.mktemp("memory"))
    async with running_memory(settings) as rt:
        yield rt


@web.middleware
async def fake_auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
    tenant = request.headers.get("X-Test-Tenant")
    if tenant:
        request[TENANT_ID] = tenant
    return await handler(request)


@pytest_asyncio.fixture
async def client(bus: Bus, memory_rt: Runtime) -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[fake_auth])
    # Bounds above the chunk size, so long turns are stored in several chunks.
    memory = BusMemory(bus, timeout=10)
    setup_memory_routes(app, memory, Bounds(256 * 1024, 40_000))
    setup_profile_routes(app, memory)
    # Forgetting goes to every owner; here memory is the only one running.
    await ensure_forget_stream(bus, owners=("memory",))
    setup_forget_routes(app, ForgetDesk(bus, wait_s=10, owners=("memory",)))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture
def sid() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


TRANSCRIPT = [
    {"role": "user", "content": "Hello, my order number is 4471.", "speaker": "Maria"},
    {"role": "assistant", "content": "Thanks Maria, let me check order 4471."},
    {"role": "user", "content": "Also my dog Biscuit ate the delivery note.", "created_at": 0},
    {"role": "assistant", "content": "Oh no! I will send a new one."},
]


async def test_import_then_history_then_search(client: TestClient, sid: str) -> None:
    r = await client.post(f"/api/sessions/{sid}/messages", json=TRANSCRIPT)
    assert r.status == 201, await r.text()
    assert (await r.json())["imported"] == 4

    r = await client.get(f"/api/sessions/{sid}/messages")
    body = await r.json()
    assert r.status == 200
    assert [m["content"] for m in body["messages"]] == [t["content"] for t in TRANSCRIPT]
    assert body["messages"][0]["speaker"] == "Maria"

    r = await client.get(f"/api/sessions/{sid}/messages", params={"limit": "2"})
    assert len((await r.json())["messages"]) == 2

    r = await client.post(
        "/api/memory/search",
        json={"session_id": sid, "query": "what is the dog called", "limit": 2},
    )
    results = (await r.json())["results"]
    assert r.status == 200
    assert "Biscuit" in results[0]["content"]
    assert len(results) <= 2
    assert {"score", "role", "created_at", "session_id"} <= set(results[0])


async def test_object_body_with_user_and_forget_user(client: TestClient, sid: str) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    body = {"messages": TRANSCRIPT[:2], "user_id": user}
    assert (await client.post(f"/api/sessions/{sid}/messages", json=body)).status == 201
    r = await client.delete(f"/api/users/{user}")
    assert r.status == 200
    assert (await r.json())["sessions"] == [sid]
    r = await client.get(f"/api/sessions/{sid}/messages")
    assert (await r.json())["messages"] == []


async def test_delete_session(client: TestClient, sid: str) -> None:
    await client.post(f"/api/sessions/{sid}/messages", json=TRANSCRIPT)
    r = await client.delete(f"/api/sessions/{sid}")
    assert r.status == 200
    assert (await r.json())["deleted"] == 4
    r = await client.post("/api/memory/search", json={"session_id": sid, "query": "order number"})
    assert (await r.json())["results"] == []


async def test_tenants_do_not_see_each_other(client: TestClient, sid: str) -> None:
    headers = {"X-Test-Tenant": "acme"}
    await client.post(f"/api/sessions/{sid}/messages", json=TRANSCRIPT, headers=headers)
    r = await client.get(f"/api/sessions/{sid}/messages")
    assert (await r.json())["messages"] == []
    r = await client.get(f"/api/sessions/{sid}/messages", headers=headers)
    assert len((await r.json())["messages"]) == 4
    # forgetting in another tenant deletes nothing here
    assert (await (await client.delete(f"/api/sessions/{sid}")).json())["deleted"] == 0


async def test_unknown_session_is_empty(client: TestClient) -> None:
    r = await client.get("/api/sessions/nobody-here/messages")
    assert r.status == 200
    assert (await r.json())["messages"] == []
    r = await client.post("/api/memory/search", json={"session_id": "nobody", "query": "x"})
    assert r.status == 200
    assert (await r.json())["results"] == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/sessions/s1/messages", [{"role": "user", "content": ""}]),
        ("/api/sessions/s1/messages", [{"role": "user", "content": "   "}]),
        ("/api/sessions/s1/messages", [{"role": "robot", "content": "hi"}]),
        ("/api/sessions/s1/messages", []),
        ("/api/sessions/s1/messages", {"nothing": 1}),
        ("/api/memory/search", {"session_id": "s1", "query": ""}),
        ("/api/memory/search", {"query": "no session"}),
        ("/api/memory/search", {"session_id": "s1", "query": "q", "limit": 0}),
    ],
)
async def test_bad_input_is_422(client: TestClient, path: str, body: object) -> None:
    r = await client.post(path, json=body)
    assert r.status == 422, await r.text()
    error = (await r.json())["error"]
    assert error["message"]
    assert error["param"]  # names the field that is wrong


async def test_not_json_is_400_and_a_bad_query_422(client: TestClient) -> None:
    r = await client.post(
        "/api/memory/search", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert r.status == 400
    assert "not valid JSON" in (await r.json())["error"]["message"]
    r = await client.get("/api/sessions/s/messages", params={"limit": "many"})
    assert r.status == 422


async def test_over_long_content_is_chunked_not_rejected(client: TestClient, sid: str) -> None:
    long = "word " * 5000 + "the parcel locker pin is 3141"
    r = await client.post(f"/api/sessions/{sid}/messages", json=[{"role": "user", "content": long}])
    assert r.status == 201
    assert (await r.json())["chunks"] > 10
    r = await client.post(
        "/api/memory/search", json={"session_id": sid, "query": "parcel locker pin"}
    )
    assert "3141" in (await r.json())["results"][0]["content"]
