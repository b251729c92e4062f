"""HTTP middlewares: every known failure as a JSON error, refusal while draining, metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from chatbus.http_guard import BodyTimeout
from chatbus.metrics import Metrics
from chatbus.redis_link import RedisError
from chatbus.telemetry import logging_context
from chatbus_gateway.api.errors import ApiError, error_body
from chatbus_gateway.api.params import check_headers, check_path_ids
from chatbus_gateway.api.request_ids import client_request_id

log = logging.getLogger("chatbus.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that do work for a caller (and so need auth, limits and a drain); the rest are probes.
API_PREFIXES = ("/api/", "/v1/")


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


@dataclass
class InFlight:
    """Counts requests being served, so shutdown can wait for them."""

    count: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def enter(self) -> None:
        self.count += 1
        self.idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


def error_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            with logging_context(client_request_id=client_request_id(request)):
                check_path_ids(request)
                check_headers(request)
                response = await handler(request)
        except ApiError as e:
            response = e.response()
        except BodyTimeout as e:
            response = ApiError(
                408, str(e), type="request_timeout", headers={"Connection": "close"}
            ).response()
        except web.HTTPException as e:
            if e.status < 400:
                raise
            response = _http_error(e)
        except RedisError:
            log.exception("redis failed during %s %s", request.method, request.path)
            response = ApiError(
                503, "a gateway store is unavailable, try again", type="unavailable"
            ).response()
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("unexpected failure during %s %s", request.method, request.path)
            response = ApiError(
                502, "the gateway could not complete the request", type="gateway_error"
            ).response()
        route = route_name(request)
        metrics.http_responses.labels(route, str(response.status)).inc()
        metrics.request_latency.labels(route).observe(time.perf_counter() - started)
        return response

    return middleware


def _http_error(e: web.HTTPException) -> web.Response:
    kinds = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
    message = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
    headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
    return web.json_response(
        error_body(message, kinds.get(e.status, "invalid_request_error"), e.status),
        status=e.status,
        headers=headers,
    )


def drain_middleware(is_draining: Callable[[], bool], inflight: InFlight) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_api(request.path):
            return await handler(request)
        if is_draining():
            raise ApiError(
                503,
                "the gateway is shutting down; retry on another instance",
                type="unavailable",
                headers={"Retry-After": "1", "Connection": "close"},
            )
        inflight.enter()
        try:
            return await handler(request)
        finally:
            inflight.leave()

    return middleware
