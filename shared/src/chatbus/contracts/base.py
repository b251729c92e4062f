"""The base every bus message derives from.

A message is a pydantic model with its NATS subject on the class. Readers ignore unknown
fields, so adding an optional field is a compatible change; anything else is a new class on a
``.v2`` subject.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """A bus message. ``subject`` is the NATS subject (or subject prefix) it travels on."""

    model_config = ConfigDict(extra="ignore", frozen=False)

    subject: ClassVar[str] = ""

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.model_validate_json(data)


ErrorCode = Literal[
    "invalid",  # the request could not be parsed or failed validation
    "not_found",
    "unavailable",  # a dependency (LLM, store) is down
    "upstream",  # the LLM answered with an error
    "timeout",
    "rate_limited",
    "budget",
    "conflict",
    "internal",
]


class ErrorReply(Message):
    """What a responder sends instead of its reply type when it cannot answer."""

    code: ErrorCode
    message: str
    detail: dict[str, Any] | None = None
