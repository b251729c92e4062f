"""``serve()``: the one way every chatbus service runs.

It reads nothing itself: the service's ``main()`` reads its settings once and hands them over
with a ``wire`` function that subscribes handlers and adds routes. ``serve`` then connects to
NATS, sets up JSON logs and traces, serves ``/health``, ``/ready`` and ``/metrics`` on the
service's port, and on SIGTERM/SIGINT stops taking work, lets in-flight messages finish and
drains the connection.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chatbus.bus import Bus
from chatbus.http_guard import ConnectionLimits, GuardedAppRunner
from chatbus.metrics import Metrics
from chatbus.redis_link import RedisLink
from chatbus.settings import ServiceSettings, without_credentials
from chatbus.telemetry import Redactor, setup_logging, setup_tracing, trace_middleware

log = logging.getLogger("chatbus.runtime")

ReadyCheck = Callable[[], Awaitable[bool]]


@dataclass
class Runtime:
    """What ``wire`` gets: the bus, the HTTP app, a metrics registry and a place for cleanups."""

    settings: ServiceSettings
    bus: Bus
    http: web.Application
    registry: CollectorRegistry
    stack: AsyncExitStack
    redactor: Redactor = field(default_factory=Redactor)
    ready_checks: dict[str, ReadyCheck] = field(default_factory=dict)
    draining: bool = False
    started_at: float = field(default_factory=time.time)
    _redis_link: RedisLink | None = None

    @property
    def metrics(self) -> Metrics:
        """The service's standard metrics (one instance per registry)."""
        return Metrics(self.registry, self.settings.service_name)

    def add_ready_check(self, name: str, check: ReadyCheck) -> None:
        self.ready_checks[name] = check

    def redis_link(self) -> RedisLink:
        """The service's one Redis connection (see redis_link), closed at shutdown."""
        if self._redis_link is None:
            self._redis_link = RedisLink(
                self.settings.redis_url, reply_timeout_s=max(self.settings.redis_wait_s, 1.0)
            )
            link = self._redis_link
            self.stack.push_async_callback(link.close)

            async def link_ok() -> bool:
                return bool(await link.call("PING") == b"PONG")

            self.add_ready_check("redis", link_ok)
        return self._redis_link


Wire = Callable[[Runtime], Awaitable[None]]


async def _health(rt: Runtime, request: web.Request) -> web.Response:
    return web.json_response(
        {
            "status": "ok",
            "service": rt.settings.service_name,
            "uptime_s": round(time.time() - rt.started_at, 1),
        }
    )


async def _ready(rt: Runtime, request: web.Request) -> web.Response:
    checks: dict[str, bool] = {"nats": rt.bus.connected and not rt.draining}
    for name, check in rt.ready_checks.items():
        try:
            checks[name] = await asyncio.wait_for(check(), timeout=2)
        except Exception:
            checks[name] = False
    ok = all(checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


async def _metrics(rt: Runtime, request: web.Request) -> web.Response:
    body = generate_latest(rt.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def connect_bus(settings: ServiceSettings, *, wait_s: float = 30.0) -> Bus:
    """Connect to NATS, retrying for ``wait_s`` seconds (NATS may still be starting)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await Bus.connect(settings.nats_url, service=settings.service_name)
        except Exception as e:
            where = without_credentials(settings.nats_url)
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{settings.service_name}: cannot reach NATS at {where}: {e}"
                ) from e
            log.warning("waiting for NATS at %s: %s", where, e)
            await asyncio.sleep(0.5)  # retry pacing while the server comes up


async def serve(
    settings: ServiceSettings,
    wire: Wire,
    *,
    stop: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
    started: Callable[[Runtime], None] | None = None,
) -> None:
    """Run one service until SIGTERM/SIGINT (or ``stop`` is set), then shut down cleanly."""
    redactor = setup_logging(
        settings.service_name, settings.log_level, settings.log_format, settings.secrets()
    )
    setup_tracing(settings.service_name)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    try:
        await _serve(settings, wire, stop, registry or CollectorRegistry(), redactor, started)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


async def _serve(
    settings: ServiceSettings,
    wire: Wire,
    stop: asyncio.Event,
    registry: CollectorRegistry,
    redactor: Redactor,
    started: Callable[[Runtime], None] | None,
) -> None:
    bus = await connect_bus(settings)
    bus.metrics = Metrics(registry, settings.service_name)
    bus.replicas = settings.nats_replicas
    try:
        await _run(settings, wire, stop, bus, registry, redactor, started)
    finally:
        if not bus.nc.is_closed:  # wiring failed: nothing to drain
            await bus.nc.close()
    log.info("%s stopped", settings.service_name)


async def _run(
    settings: ServiceSettings,
    wire: Wire,
    stop: asyncio.Event,
    bus: Bus,
    registry: CollectorRegistry,
    redactor: Redactor,
    started: Callable[[Runtime], None] | None,
) -> None:
    async with AsyncExitStack() as stack:
        http = web.Application(client_max_size=1024 * 1024, middlewares=[trace_middleware])
        rt = Runtime(
            settings=settings,
            bus=bus,
            http=http,
            registry=registry,
            stack=stack,
            redactor=redactor,
        )
        for path, view in (("/health", _health), ("/ready", _ready), ("/metrics", _metrics)):
            http.router.add_get(path, functools.partial(view, rt))
        await wire(rt)

        limits = ConnectionLimits(
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            idle_timeout_s=settings.http_idle_timeout_s,
            max_per_ip=settings.http_max_connections_per_ip,
        )
        # A client that closes its connection cancels its request's handler: work nobody
        # waits for stops (a chat's agent is told, and writes nothing) instead of running on.
        runner = GuardedAppRunner(
            http,
            limits,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=15,
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        await site.start()
        log.info(
            "%s listening on %s:%d (nats %s)",
            settings.service_name,
            settings.host,
            runner.addresses[0][1] if runner.addresses else settings.port,
            settings.nats_url,
        )
        # Everything built so far lives as long as the service: keep the garbage collector
        # from rescanning it on every collection (less CPU per message).
        gc.collect()
        gc.freeze()
        if started:
            started(rt)
        await stop.wait()

        log.info("%s draining", settings.service_name)
        rt.draining = True
        await bus.drain()
        await runner.cleanup()


def run(settings: ServiceSettings, wire: Wire, **kwargs: Any) -> None:
    """Blocking entry point for ``python -m <service>``: uvloop when present, then serve."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - Windows
        pass
    asyncio.run(serve(settings, wire, **kwargs))
