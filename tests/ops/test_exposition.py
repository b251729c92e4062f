"""What Prometheus and the orchestrator see: /health, /ready and a /metrics promtool accepts."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from chatbus import runtime
from chatbus.metrics import Metrics
from chatbus.runtime import Runtime
from chatbus.settings import ServiceSettings
from chatbus_dev.offline_llm import OfflineLLM
from chatbus_dev.servers import free_port
from chatbus_dev.testing import ServiceFactory, serving
from tests.ops.opsfiles import SERVICES

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (Debian package `prometheus`)"
)


def promtool_says(body: bytes) -> str | None:
    """What ``promtool check metrics`` objects to in an exposition (None when clean)."""
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    return None if done.returncode == 0 else (done.stdout + done.stderr).decode()


def record_samples(m: Metrics) -> None:
    """One sample in every family, as a busy service would have."""
    m.messages.labels("support", "ok").inc(3)
    m.messages.labels("support", "llm_unavailable").inc()
    m.request_latency.labels("/api/chat").observe(0.12)
    m.llm_latency.labels("support", "gpt-4o-mini").observe(0.8)
    m.llm_errors.labels("gpt-4o-mini", "timeout").inc()
    m.tokens.labels("support", "gpt-4o-mini", "prompt").inc(120)
    m.cost.labels("support", "gpt-4o-mini").inc(0.0004)
    m.cache.labels("response", "hit").inc()
    m.cache.labels("response", "miss").inc(2)
    m.rate_limited.labels("tenant").inc()
    m.http_responses.labels("/api/chat", "200").inc()
    m.queue_pending.labels("memory-writer").set(4)
    m.redeliveries.labels("memory-writer").inc()
    m.dead_letters.labels("memory.write.v1").inc()
    m.budget_remaining.labels("global", "monthly").set(412.5)
    m.handoffs.labels("support", "sales").inc()


@asynccontextmanager
async def serving_url(
    settings: ServiceSettings, wire: Callable[[Runtime], Awaitable[None]]
) -> AsyncIterator[str]:
    """Run ``serve()`` in this process; yields its base URL, stops it cleanly at the end."""
    async with serving(settings, wire):
        yield f"http://127.0.0.1:{settings.port}"


@pytest.fixture
def quiet_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve() installs logging and a global tracer provider: keep them out of other tests."""
    import logging

    monkeypatch.setattr(runtime, "setup_tracing", lambda service: None)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)


def make_settings(nats_url: str, redis_url: str) -> ServiceSettings:
    return ServiceSettings(
        _env_file=None,
        service_name="ops-test",
        nats_url=nats_url,
        redis_url=redis_url,
        host="127.0.0.1",
        port=free_port(),
    )


@needs_promtool
@pytest.mark.usefixtures("quiet_globals")
async def test_runtime_endpoints_and_promtool_clean_metrics(nats_url: str, redis_url: str) -> None:
    async def wire(rt: Runtime) -> None:
        record_samples(Metrics(rt.registry, "ops-test"))
        rt.redis_link()  # registers the redis ready check

    async with serving_url(make_settings(nats_url, redis_url), wire) as url:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/health") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with http.get(url + "/ready") as r:
                ready: dict[str, Any] = await r.json()
                assert r.status == 200, ready
                assert ready["checks"] == {"nats": True, "redis": True}
            async with http.get(url + "/metrics") as r:
                assert r.status == 200 and r.content_type == "text/plain"
                body = await r.read()
    for name in (
        "chatbus_messages_total",
        "chatbus_dead_letters_total",
        "chatbus_budget_remaining_usd",
    ):
        assert name.encode() in body
    assert promtool_says(body) is None


@pytest.mark.usefixtures("quiet_globals")
async def test_ready_reports_a_dependency_that_is_down(nats_url: str) -> None:
    async def wire(rt: Runtime) -> None:
        rt.redis_link()

    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with serving_url(make_settings(nats_url, dead_redis), wire) as url:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/ready") as r:
                ready = await r.json()
                assert r.status == 503
                assert ready["checks"] == {"nats": True, "redis": False}
            async with http.get(url + "/health") as r:
                assert r.status == 200  # alive, just not ready: no restart loop


@pytest.mark.e2e
async def test_every_service_serves_health_ready_and_valid_metrics(
    service_factory: ServiceFactory, fake_llm: tuple[OfflineLLM, str]
) -> None:
    """Each service started the way its Dockerfile starts it: python -m <package> on PORT.

    The exposition goes through ``promtool check metrics`` when promtool is installed.
    """
    _, llm_url = fake_llm
    env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "test-key", "EMBEDDINGS": "local"}
    procs = await asyncio.gather(*(service_factory.start(s.package, **env) for s in SERVICES))
    problems: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            for svc, proc in zip(SERVICES, procs, strict=True):
                problems += await exposition_problems(http, svc.dir, proc.url)
    finally:
        # SIGTERM, as docker stop and Railway send it: each service drains and exits 0.
        children = [p.proc for p in procs if p.proc is not None]
        for child in children:
            child.terminate()  # once: a second SIGTERM during interpreter exit kills
        for svc, child in zip(SERVICES, children, strict=True):
            try:
                code = child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            if code != 0:
                problems.append(f"{svc.dir}: exit code {code} after SIGTERM")
    assert not problems, "\n".join(problems)


async def exposition_problems(http: aiohttp.ClientSession, name: str, url: str) -> list[str]:
    out: list[str] = []
    for path in ("/health", "/ready"):
        async with http.get(url + path) as r:
            if r.status != 200:
                out.append(f"{name}: {path} answered {r.status}: {await r.text()}")
    async with http.get(url + "/metrics") as r:
        body = await r.read()
    if b"# TYPE chatbus_" not in body:
        out.append(f"{name}: /metrics exposes no chatbus metrics")
    if promtool is not None and (complaint := promtool_says(body)):
        out.append(f"{name}: promtool check metrics: {complaint}")
    return out
