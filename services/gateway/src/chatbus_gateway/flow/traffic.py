"""The chat traffic this gateway served, minute by minute: the dashboard's requests, errors and
latency per agent (``GET /api/stats``).

Kept in memory for the last hour, per tenant and agent, so a tenant's dashboard counts only its
own requests. It is a view, not a record: a restart starts it empty, and with several gateway
instances each one answers for its own traffic (``/metrics`` is what Prometheus aggregates).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.middleware import Handler, route_name
from chatbus_gateway.api.params import query_tenant
from chatbus_gateway.auth.caller import is_admin, tenant_of

WINDOW_MINUTES = 60
SAMPLES_PER_BUCKET = 256  # latency samples kept per minute, tenant and agent (a reservoir)
CHAT_ROUTES = frozenset({"/api/chat/{agent_id}", "/v1/chat/completions"})
# Set by the chat handlers once they know the agent (the OpenAI API names it in the body).
CHAT_AGENT = web.RequestKey("chatbus_chat_agent", str)


@dataclass
class Bucket:
    requests: int = 0
    errors: int = 0  # 5xx: the platform or the model failed
    refused: int = 0  # 4xx: refused (limits, budgets, bad input)
    seen: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, status: int, seconds: float, rng: random.Random) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        elif status >= 400:
            self.refused += 1
        self.seen += 1
        if len(self.latencies) < SAMPLES_PER_BUCKET:
            self.latencies.append(seconds)
        elif (slot := rng.randrange(self.seen)) < SAMPLES_PER_BUCKET:
            self.latencies[slot] = seconds


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (``q`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Traffic:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.rng = random.Random()
        self.buckets: dict[tuple[int, str, str], Bucket] = {}

    def record(self, tenant: str, agent: str, status: int, seconds: float) -> None:
        minute = int(self.clock() // 60)
        key = (minute, tenant, agent)
        if key not in self.buckets:
            self._prune(minute)
            self.buckets[key] = Bucket()
        self.buckets[key].add(status, seconds, self.rng)

    def _prune(self, minute: int) -> None:
        for key in [k for k in self.buckets if k[0] <= minute - WINDOW_MINUTES]:
            del self.buckets[key]

    def summary(self, tenant: str | None) -> dict[str, Any]:
        """The last hour for ``tenant`` (None: every tenant): per minute, and per agent."""
        now = int(self.clock() // 60)
        first = now - WINDOW_MINUTES + 1
        minutes = {m: Bucket() for m in range(first, now + 1)}
        agents: dict[str, Bucket] = {}
        for (minute, who, agent), b in self.buckets.items():
            if minute < first or (tenant is not None and who != tenant):
                continue
            for into in (minutes[minute], agents.setdefault(agent, Bucket())):
                into.requests += b.requests
                into.errors += b.errors
                into.refused += b.refused
                into.latencies.extend(b.latencies)
        return {
            "window_minutes": WINDOW_MINUTES,
            "per_minute": [
                {
                    "minute": datetime.fromtimestamp(m * 60, UTC).strftime("%Y-%m-%dT%H:%MZ"),
                    "requests": b.requests,
                    "errors": b.errors,
                    "refused": b.refused,
                }
                for m, b in minutes.items()
            ],
            "agents": [
                {
                    "agent": agent,
                    "requests": b.requests,
                    "errors": b.errors,
                    "refused": b.refused,
                    "p50_ms": _ms(percentile(b.latencies, 0.50)),
                    "p95_ms": _ms(percentile(b.latencies, 0.95)),
                }
                for agent, b in sorted(agents.items())
            ],
        }

    def middleware(self) -> Middleware:
        """Counts every chat request (both APIs) with its status and time; install after auth."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if route_name(request) not in CHAT_ROUTES:
                return await handler(request)
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except ApiError as e:
                status = e.status
                raise
            except web.HTTPException as e:
                status = e.status
                raise
            except asyncio.CancelledError:
                status = 499  # the caller went away
                raise
            finally:
                agent = request.get(CHAT_AGENT) or request.match_info.get("agent_id") or "-"
                seconds = time.perf_counter() - started
                self.record(tenant_of(request), agent[:64], status, seconds)

        return middleware


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


TRAFFIC = web.AppKey("chatbus_gateway_traffic", Traffic)


async def stats(request: web.Request) -> web.Response:
    """``GET /api/stats``: the caller's tenant; an admin sees every tenant (``?tenant=<id>``
    narrows it to one)."""
    traffic = request.app[TRAFFIC]
    tenant: str | None = tenant_of(request)
    asked = query_tenant(request)
    if is_admin(request):
        tenant = None if asked in (None, "*") else asked
    return web.json_response({"tenant": tenant or "*", **traffic.summary(tenant)})
