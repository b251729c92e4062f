"""Blind SSRF through ``callback_url`` (issue 10, defect 1): callbacks reach only public
addresses unless a deployment allows a host, never follow redirects, and the job record shows
only a generic outcome."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chatbus_dev.servers import free_port
from chatbus_gateway.jobs.callbacks import (
    CallbackPolicy,
    CallbackRefused,
    CheckedResolver,
    is_public,
)
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import Callbacks, RunningGateway, StartGateway
from tests.gateway.test_gateway_jobs import job_until

INTERNAL = [
    "http://127.0.0.1:6379/",
    "http://localhost:4222/",
    "http://10.0.0.7/hook",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0:8080/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[::1]:8080/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[2002:7f00:1::]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[::]/",
    "http://user:pw@example.com/",
    "http://2130706433/",
]


async def post_job(
    http: aiohttp.ClientSession, gw: RunningGateway, agent: str, url: str
) -> tuple[int, Any]:
    async with http.post(
        f"{gw.url}/api/chat/{agent}?mode=async",
        json={"message": "hi", "session_id": "ssrf", "callback_url": url},
    ) as r:
        return r.status, await r.json()


async def test_internal_callback_urls_are_refused_when_the_job_is_accepted(
    start_gateway: StartGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(callback_allow_hosts="")
    for url in INTERNAL:
        status, body = await post_job(http, gw, agent.agent, url)
        assert status == 422, (url, body)
        assert body["error"]["param"] == "callback_url" and body["error"]["code"] == 422


async def test_allow_listed_hosts_are_called_back(
    start_gateway: StartGateway,
    agent: StubAgent,
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(callback_allow_hosts="localhost, 127.0.0.0/8")
    port = callbacks.url.split(":")[2].split("/")[0]
    for url in (callbacks.url, f"http://localhost:{port}/hook"):
        status, body = await post_job(http, gw, agent.agent, url)
        assert status == 202, body
        assert (await callbacks.next())["job_id"] == body["job_id"]


async def test_redirects_are_not_followed_and_outcomes_name_no_errors(
    start_gateway: StartGateway, agent: StubAgent, http: aiohttp.ClientSession
) -> None:
    inner_hits: list[str] = []

    async def inner(request: web.Request) -> web.Response:
        inner_hits.append(request.path)
        return web.json_response({})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{inner_port}/secret")

    app = web.Application()
    app.router.add_post("/hook", redirect)
    app.router.add_post("/secret", inner)
    runner = web.AppRunner(app)
    await runner.setup()
    inner_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", inner_port).start()
    try:
        gw = await start_gateway(callback_allow_hosts="127.0.0.1", callback_max_deliver=1)
        _, body = await post_job(http, gw, agent.agent, f"http://127.0.0.1:{inner_port}/hook")
        assert (await outcome(http, gw, body["job_id"])) == "failed (302)"
        assert inner_hits == []
        # Nothing listens here: the record says "failed", not what the connection raised.
        _, body = await post_job(http, gw, agent.agent, f"http://127.0.0.1:{free_port()}/")
        assert (await outcome(http, gw, body["job_id"])) == "failed"
    finally:
        await runner.cleanup()


async def outcome(http: aiohttp.ClientSession, gw: RunningGateway, job_id: str) -> str:
    """The job's callback outcome, once there is one."""
    record = await job_until(http, gw, job_id, lambda r: bool(r.get("callback")))
    return str(record["callback"])


async def test_delivery_checks_again_so_a_revoked_host_is_not_called(
    start_gateway: StartGateway,
    agent: StubAgent,
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    uid: str,
) -> None:
    # Accepted while 127.0.0.1 was allowed; delivered by a gateway that no longer allows it.
    first = await start_gateway(callback_allow_hosts="127.0.0.1", job_agent_poll_s=0.05)
    _, body = await post_job(http, first, f"later-{uid}", callbacks.url)
    await first.close()
    second = await start_gateway(callback_allow_hosts="")
    stub = await StubAgent(agent.bus, f"later-{uid}", agent.llm_url).start()
    try:
        assert (await outcome(http, second, body["job_id"])) == "failed"
    finally:
        await stub.close()
    assert callbacks.received == []


def test_production_takes_https_only() -> None:
    policy = CallbackPolicy(https_only=True)
    with pytest.raises(CallbackRefused):
        policy.parse("http://hooks.example.com/")
    assert policy.parse("https://hooks.example.com/x") == ("hooks.example.com", 443)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("ff02::1", False),
        ("fd00::1", False),
    ],
)
def test_address_classes(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_the_connection_uses_only_checked_addresses() -> None:
    # What the HTTP client connects to comes from this resolver: a name whose answer is (or
    # turns) private yields no address at all, so a rebinding DNS answer is never dialled.
    with pytest.raises(OSError, match="no allowed address"):
        await CheckedResolver(CallbackPolicy()).resolve("localhost", 80, socket.AF_INET)
    allowed = await CheckedResolver(CallbackPolicy("127.0.0.0/8")).resolve(
        "localhost", 80, socket.AF_INET
    )
    assert [r["host"] for r in allowed] == ["127.0.0.1"]
