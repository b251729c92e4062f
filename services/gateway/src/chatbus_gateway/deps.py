"""What the gateway's routes share, built once in ``wire`` and kept on the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from chatbus.bus import Bus
from chatbus.metrics import Metrics
from chatbus.redis_link import RedisLink
from chatbus_gateway.api.middleware import InFlight
from chatbus_gateway.settings import GatewaySettings


@dataclass
class GatewayDeps:
    settings: GatewaySettings
    bus: Bus
    link: RedisLink  # the gateway's one Redis connection (its keys under redis_prefix)
    metrics: Metrics
    # For job callbacks; one session for the process, never one per request.
    http: aiohttp.ClientSession | None = None
    is_draining: Callable[[], bool] = lambda: False
    inflight: InFlight = field(default_factory=InFlight)


DEPS = web.AppKey("chatbus_gateway_deps", GatewayDeps)
