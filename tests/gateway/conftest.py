"""Gateway test fixtures: the gateway served in-process on a free port, and stub agents."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web

from chatbus.bus import Bus
from chatbus.runtime import Runtime, serve
from chatbus_dev.servers import free_port
from chatbus_gateway.app import wire
from chatbus_gateway.settings import GatewaySettings
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import Callbacks, RunningGateway, StartGateway


@pytest_asyncio.fixture
async def start_gateway(nats_url: str, redis_url: str, uid: str) -> AsyncIterator[StartGateway]:
    """Start gateways sharing this test's Redis prefix; each call may override settings."""
    running: list[RunningGateway] = []

    async def start(**overrides: Any) -> RunningGateway:
        values: dict[str, Any] = {
            "nats_url": nats_url,
            "redis_url": redis_url,
            "host": "127.0.0.1",
            "port": free_port(),
            "log_format": "text",
            "redis_prefix": f"gwtest:{uid}:",
            "jobs_stream": f"JOBS_{uid}",
            "jobs_subject": f"test.{uid}.jobs",
            "callbacks_stream": f"CALLBACKS_{uid}",
            "callbacks_subject": f"test.{uid}.callbacks",
            "jobs_bucket": f"jobs_{uid}",
            "idempotency_bucket": f"idem_{uid}",
            # The tests' callback receivers listen on loopback: allowed explicitly.
            "callback_allow_hosts": "127.0.0.1",
            "auth": "off",
        }
        values.update(overrides)
        settings = GatewaySettings(**values)
        stop = asyncio.Event()
        started: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(settings, wire, stop=stop, started=started.set_result))
        done, _ = await asyncio.wait({started, task}, timeout=15, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()
        gw = RunningGateway(f"http://127.0.0.1:{settings.port}", started.result(), stop, task)
        running.append(gw)
        return gw

    yield start
    for gw in running:
        if not gw.task.done():
            with contextlib.suppress(Exception):
                await gw.close()


@pytest_asyncio.fixture
async def gateway(start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway()


@pytest_asyncio.fixture
async def agent(bus: Bus, fake_llm: tuple[Any, str], uid: str) -> AsyncIterator[StubAgent]:
    """A stub agent named ``support-<uid>`` answering through the fake LLM."""
    _, url = fake_llm
    stub = await StubAgent(bus, f"support-{uid}", url, label="Support").start()
    yield stub
    await stub.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def callbacks() -> AsyncIterator[Callbacks]:
    hooks = Callbacks()
    app = web.Application()
    app.router.add_post("/hook", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hooks.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield hooks
    await runner.cleanup()
