"""Every failure the gateway knows, as one JSON error shape with the right HTTP status.

The body is OpenAI's error shape, so the OpenAI SDK shows the message and the native API
reads the same: ``{"error": {"message", "type", "code", "param"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
from aiohttp import web

from chatbus.errors import BusUnavailable, NoResponders, RemoteError, RequestTimeout

log = logging.getLogger("chatbus.gateway")

# RemoteError codes from agents -> (HTTP status, error type)
REMOTE_STATUS: dict[str, tuple[int, str]] = {
    "invalid": (422, "invalid_request_error"),
    "not_found": (404, "not_found"),
    "unavailable": (503, "unavailable"),
    "upstream": (502, "upstream_error"),
    "timeout": (504, "timeout"),
    "rate_limited": (429, "rate_limited"),
    "budget": (402, "budget_exceeded"),
    "conflict": (409, "conflict"),
    "internal": (502, "agent_error"),
}


class ApiError(Exception):
    """Raised anywhere in a request; the error middleware turns it into a JSON answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.status, self.param)

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def error_body(message: str, type: str, status: int, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "code": status, "param": param}}


def from_bus_error(exc: BaseException, agent: str) -> ApiError:
    """Map what a bus request to ``agent`` raised to the error the caller sees."""
    if isinstance(exc, NoResponders):
        return ApiError(404, f"unknown agent {agent!r}: no instance is running", type="not_found")
    if isinstance(exc, RequestTimeout):
        return ApiError(504, f"agent {agent!r} did not answer in time", type="timeout")
    if isinstance(exc, RemoteError):
        status, kind = REMOTE_STATUS.get(exc.code, (502, "agent_error"))
        message = exc.message
        if exc.code == "upstream":
            message = f"the language model failed: {exc.message}"
        return ApiError(status, message, type=kind)
    if isinstance(exc, (BusUnavailable, nats.errors.Error, ConnectionError)):
        return ApiError(503, "the message bus is unavailable, try again", type="unavailable")
    log.error("unexpected failure talking to agent %s", agent, exc_info=exc)
    return ApiError(502, f"agent {agent!r} failed unexpectedly", type="agent_error")
