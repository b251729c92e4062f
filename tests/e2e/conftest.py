"""The whole system as processes: gateway, both agents, memory and cost, like `chatbus up`.

Each service connects to Redis as its own ACL user, allowed only its own key prefix (the one
its settings declare), so a service touching another's keys fails the suite with NOPERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web

from chatbus.agent.keyspace import REDIS_PREFIX as AGENT_PREFIX
from chatbus_cost.__main__ import CostSettings
from chatbus_dev import offline_llm
from chatbus_dev.offline_llm import OfflineLLM
from chatbus_dev.otlp_sink import SpanSink
from chatbus_dev.testing import ServiceFactory, ServiceProcess
from chatbus_gateway.settings import GatewaySettings
from chatbus_memory.settings import MemorySettings

DEMO_USER = "e2e-demo-user"

# Redis ACL user and key prefix of each service (the prefixes as each service declares them;
# both agent services are one owner: the agent runtime).
OWNERS = {
    "chatbus_gateway": ("gateway", GatewaySettings.model_fields["redis_prefix"].default),
    "agent_support": ("agent", AGENT_PREFIX),
    "agent_sales": ("agent", AGENT_PREFIX),
    "chatbus_memory": ("memory", MemorySettings.model_fields["redis_prefix"].default),
    "chatbus_cost": ("cost", CostSettings.model_fields["redis_prefix"].default),
}

# One password per owner for the test session (both agent services share theirs).
PASSWORDS = {user: f"{user}-{secrets.token_hex(8)}" for user, _ in OWNERS.values()}


async def redis_users(admin_url: str) -> dict[str, str]:
    """One ACL user per owner, limited to its prefix; the Redis URL each service uses."""
    client = aioredis.Redis.from_url(admin_url)
    urls: dict[str, str] = {}
    u = urlsplit(admin_url)
    try:
        for module, (user, prefix) in OWNERS.items():
            password = PASSWORDS[user]
            # +@all -@dangerous, and the scripts they run (SCRIPT LOAD, EVALSHA are @scripting).
            await client.execute_command(
                "ACL", "SETUSER", user, "reset", "on", f">{password}", f"~{prefix}*",
                "resetchannels", "+@all", "-@dangerous",
            )  # fmt: skip
            netloc = f"{user}:{password}@{u.hostname}:{u.port}"
            urls[module] = urlunsplit((u.scheme, netloc, u.path, u.query, ""))
    finally:
        await client.aclose()
    return urls


@dataclass
class Stack:
    llm: OfflineLLM
    llm_url: str
    factory: ServiceFactory
    gateway: ServiceProcess
    support: ServiceProcess
    sales: ServiceProcess
    http: aiohttp.ClientSession
    spans: SpanSink

    @property
    def url(self) -> str:
        return self.gateway.url

    def agent_env(self) -> dict[str, str]:
        return {
            "OPENAI_BASE_URL": self.llm_url,
            "OPENAI_API_KEY": "sk-test-e2e-secret",
            "HISTORY_TURNS": "4",
            "LOG_CONTENT": "false",
        }

    async def chat(
        self, agent: str, message: str, session: str, **extra: object
    ) -> tuple[int, dict[str, object]]:
        body = {"message": message, "session_id": session, **extra}
        async with self.http.post(f"{self.url}/api/chat/{agent}", json=body) as r:
            return r.status, await r.json()


# A user's daily token budget the e2e tests exhaust on purpose, and budgets the dashboard
# shows (set high: no test reaches them).
BUDGETS = (
    '{"budgets": [{"scope": "user", "id": "broke-user", "period": "daily",'
    ' "unit": "tokens", "hard": 1},'
    ' {"scope": "global", "period": "monthly", "unit": "usd", "soft": 40, "hard": 50},'
    ' {"scope": "tenant", "period": "daily", "unit": "tokens", "soft": 4000000, "hard": 5000000}]}'
)


@contextlib.asynccontextmanager
async def run_stack(
    tmp: Path, nats_url: str, redis_url: str, otlp: str | None = None, **gateway_env: str
) -> AsyncIterator[Stack]:
    """Every service as a process against an offline model; spans go to ``otlp`` when given,
    else to an in-test :class:`SpanSink`."""
    llm = OfflineLLM()
    runner, llm_url = await offline_llm.start(llm)
    sink = SpanSink()
    sink_runner = web.AppRunner(sink.app())
    await sink_runner.setup()
    site = web.TCPSite(sink_runner, "127.0.0.1", 0)
    await site.start()
    otlp = otlp or f"http://127.0.0.1:{sink_runner.addresses[0][1]}"
    users = await redis_users(redis_url)
    factory = ServiceFactory(
        tmp,
        nats_url,
        redis_url,
        {module: {"REDIS_URL": url} for module, url in users.items()},
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    common = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "sk-test-e2e-secret"}
    # DEMO_DATA: the demo orders belong to DEMO_USER (as `chatbus up` seeds them for demo-user).
    agent_env = {**common, "HISTORY_TURNS": "4", "DEMO_DATA": f"default/{DEMO_USER}"}
    try:
        await asyncio.gather(
            factory.start("chatbus_cost", BUDGETS_JSON=BUDGETS),
            factory.start("chatbus_memory", **common),
        )
        support, sales = await asyncio.gather(
            factory.start("agent_support", **agent_env), factory.start("agent_sales", **agent_env)
        )
        gateway = await factory.start(
            "chatbus_gateway",
            **{
                "CHATBUS_AUTH": "off",
                "RATE_IP_PER_MIN": "0",
                "RATE_SESSION_PER_MIN": "0",
                "RATE_USER_PER_MIN": "0",
                **gateway_env,
            },
        )
        async with aiohttp.ClientSession() as http:
            yield Stack(llm, llm_url, factory, gateway, support, sales, http, sink)
    finally:
        # In parallel and off the event loop: a service's last spans and model calls go to the
        # sink and the model that live on this loop, so blocking it would stall their shutdown.
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in factory.started))
        await runner.cleanup()
        await sink_runner.cleanup()


@pytest_asyncio.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, nats_url: str, redis_url: str
) -> AsyncIterator[Stack]:
    async with run_stack(tmp_path_factory.mktemp("stack"), nats_url, redis_url) as s:
        yield s
