"""Errors that cross the bus: raised by handlers, re-raised on the requesting side."""

from __future__ import annotations

from typing import Any

from chatbus.contracts.base import ErrorCode, ErrorReply


class BusError(Exception):
    """Base of every error the bus raises to a caller."""


class NoResponders(BusError):
    """Nobody listens on the subject (no running instance)."""


class RequestTimeout(BusError):
    """A responder exists but did not answer in time."""


class InstanceLost(BusError):
    """The instance working on a request stopped beating (it died); another may take it."""


class BusUnavailable(BusError):
    """The bus connection is down."""


class RemoteError(BusError):
    """A responder answered with an :class:`ErrorReply`.

    Handlers raise it to reply with an error; requesters receive it back.
    """

    def __init__(self, code: ErrorCode, message: str, detail: dict[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message
        self.detail = detail

    def to_reply(self) -> ErrorReply:
        return ErrorReply(code=self.code, message=self.message, detail=self.detail)

    @classmethod
    def from_reply(cls, reply: ErrorReply) -> RemoteError:
        return cls(reply.code, reply.message, reply.detail)


class RecallSkipped(Exception):
    """Memory did not answer within its share of the deadline: the chat goes on without it,
    and its reply says ``degraded: "memory"``."""
