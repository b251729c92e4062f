"""Connection deadlines for every service's HTTP server (slowloris), and JSON protocol errors.

aiohttp's server has no deadline for reading a request's head or body: a client sending one
header line every few seconds, or nothing at all, holds a connection (and its memory) for as
long as it likes. :class:`GuardedAppRunner` serves an app with a request handler that adds:

* a **header deadline**: a request's head (request line and headers) must be complete within
  ``header_timeout_s`` of the connection opening, or of its first byte on a kept-alive
  connection; otherwise 408 and the connection is closed;
* a **body deadline**: the whole body must arrive within ``body_timeout_s`` of the head; a
  handler still reading it gets :class:`BodyTimeout` (the gateway answers 408) and the
  connection is closed;
* an **idle deadline**: a kept-alive connection with no request is closed after
  ``idle_timeout_s`` (aiohttp's keep-alive timer);
* a **cap of open connections per client address** (``max_per_ip``, 0 = none): one more is
  answered 429 and closed at once. Behind a proxy every client shares its address: raise it.

Malformed requests that aiohttp's parser refuses (smuggling attempts, bad headers) are answered
in the platform's JSON error shape, and logged at debug level without a traceback (an attacker
must not be able to fill the logs).

This relies on attributes of aiohttp's ``RequestHandler`` (``_request_count``, ``_messages``,
``_waiter``) and ``Server._kwargs``; ``tests/security/test_slowloris.py`` pins the behaviour.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger("chatbus.http")


class BodyTimeout(asyncio.TimeoutError):
    """The request body did not arrive within the body deadline."""


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 5.0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 15.0
    max_per_ip: int = 128


def error_json(status: int, message: str, type: str) -> bytes:
    """The platform's error body: ``{"error": {message, type, code, param}}``."""
    error = {"message": message, "type": type, "code": status, "param": None}
    return json.dumps({"error": error}).encode()


def raw_answer(status: int, reason: str, message: str, type: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection (written outside a handler)."""
    body = error_json(status, message, type)
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


class GuardedServer(web.Server):
    """``web.Server`` whose connections are :class:`GuardedHandler`; counts them per address."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.open_per_ip: Counter[str] = Counter()

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedHandler(RequestHandler):
    __slots__ = (
        "_armed_at",
        "_body_timer",
        "_guard",
        "_head_bytes",
        "_head_timer",
        "_ip",
        "_timed_body",
    )

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._ip: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._timed_body: Any = None  # the payload the body deadline watches
        self._armed_at = 0
        self._head_bytes = 0

    # -- connections per address -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else "unknown"
        limits, counts = self._guard.limits, self._guard.open_per_ip
        if limits.max_per_ip and counts[ip] >= limits.max_per_ip:
            log.warning("refused a connection from %s: %d already open", ip, counts[ip])
            message = f"more than {limits.max_per_ip} open connections from your address"
            self._say(429, "Too Many Requests", message, "rate_limited", "Retry-After: 1\r\n")
            return
        counts[ip] += 1
        self._ip = ip
        self._arm_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_timers()
        if self._ip is not None:
            counts = self._guard.open_per_ip
            counts[self._ip] -= 1
            if counts[self._ip] <= 0:
                del counts[self._ip]
            self._ip = None
        super().connection_lost(exc)

    # -- deadlines ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._waiter is not None and data:
            self._arm_head()  # the first bytes of the next request on a kept-alive connection
        self._head_bytes += len(data)
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a head is complete: the header deadline is met
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            self._head_bytes = 0
            if self._messages:
                payload = self._messages[-1][1]
                if not payload.is_eof():
                    self._arm_body(payload)
        elif self._body_timer is not None and self._timed_body.is_eof():
            self._body_timer.cancel()
            self._body_timer, self._timed_body = None, None

    def _arm_head(self) -> None:
        self._armed_at = self._request_count
        self._head_bytes = 0
        self._head_timer = self._loop.call_later(
            self._guard.limits.header_timeout_s, self._head_late
        )

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_count != self._armed_at or self.transport is None:
            return
        if self._head_bytes:
            limit = self._guard.limits.header_timeout_s
            message = f"the request head did not arrive within {limit:g} s"
            self._say(408, "Request Timeout", message, "request_timeout")
        else:
            self.force_close()

    def _arm_body(self, payload: Any) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()

        def late() -> None:
            self._body_timer, self._timed_body = None, None
            if not payload.is_eof():
                limit = self._guard.limits.body_timeout_s
                payload.set_exception(BodyTimeout(f"the body did not arrive within {limit:g} s"))
                self.close()  # the rest of the body is never read: no keep-alive

        self._timed_body = payload
        self._body_timer = self._loop.call_later(self._guard.limits.body_timeout_s, late)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._timed_body = None

    def _say(self, status: int, reason: str, message: str, kind: str, extra: str = "") -> None:
        if self.transport is not None:
            self.transport.write(raw_answer(status, reason, message, kind, extra))
        self.force_close()

    # -- what aiohttp's parser refused -----------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        # The parser's message quotes the offending bytes: keep its first clause only.
        reason = (message or "malformed request").split("\n", 1)[0]
        reason = reason.split(": b'", 1)[0].split(': b"', 1)[0].rstrip(": ")[:120]
        log.debug("refused a malformed request from %s: %s", request.remote, reason)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already sent")
        resp = web.Response(
            status=status,
            body=error_json(status, f"malformed HTTP request: {reason}", "invalid_request_error"),
            content_type="application/json",
        )
        resp.force_close()
        return resp


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` serving ``app`` with :class:`GuardedHandler` connections."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.idle_timeout_s, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            limits=self.limits,
            **plain._kwargs,
        )
