"""Forgetting a session or a user: one event on JetStream, one confirmation per owner.

``DELETE /api/sessions/{id}`` and ``DELETE /api/users/{id}`` make the gateway publish a
:class:`ForgetRequested` on the ``FORGET`` stream (the gateway's). Every service that keeps
state about sessions or users — the owners in :data:`FORGET_OWNERS`, declared here and
nowhere else — handles it in its own durable consumer, deletes only its own state, and
publishes a :class:`ForgetConfirmed` on the same stream. An owner that is down gets the event
when it comes back; until then the request's status says which owners are pending.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from chatbus.contracts.base import Message

FORGET_STREAM = "FORGET"
# Who keeps state about a session or a user. The cost service is not one: it keeps usage
# totals and budget counters (accounting that a user must not be able to reset by asking).
FORGET_OWNERS: tuple[str, ...] = ("gateway", "agent", "memory")


def durable_for(owner: str) -> str:
    """The durable consumer of ``owner`` on the forget stream."""
    return f"forget-{owner}"


class ForgetRequested(Message):
    """Delete every trace of a session, or of a user (all their sessions), in ``tenant_id``."""

    subject: ClassVar[str] = "forget.requested.v1"  # + ".<forget_id>"

    forget_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    tenant_id: str = "default"
    session_id: str | None = Field(default=None, min_length=1, max_length=200)
    user_id: str | None = Field(default=None, min_length=1, max_length=200)
    requested_at: float = 0.0

    @model_validator(mode="after")
    def _exactly_one(self) -> ForgetRequested:
        if (self.session_id is None) == (self.user_id is None):
            raise ValueError("give exactly one of session_id or user_id")
        return self

    def subject_of(self) -> str:
        return f"{self.subject}.{self.forget_id}"


class ForgetConfirmed(Message):
    """``owner`` deleted its state about the request ``forget_id``."""

    subject: ClassVar[str] = "forget.confirmed.v1"  # + ".<forget_id>.<owner>"

    forget_id: str
    tenant_id: str = "default"
    owner: str
    deleted: int = 0  # keys, points or records the owner removed
    sessions: list[str] = Field(default_factory=list)  # the sessions it knew of (a user's)

    def subject_of(self) -> str:
        return f"{self.subject}.{self.forget_id}.{self.owner}"
