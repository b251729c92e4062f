"""Domain events: facts one agent publishes for the others, on the stream ``DOMAIN_EVENTS``.

Subjects are ``<domain>.<entity>.<past-tense verb>.v<major>`` (``sales.lead.qualified.v1``).
The stream holds every subject under :data:`DOMAIN_EVENT_SUBJECTS`; a new domain adds its
prefix there. ``event_id`` is the ``Nats-Msg-Id``, so a retried publish is stored once, and
subscribers use it to record an event once however often it is delivered.
"""

from __future__ import annotations

import time
import uuid
from typing import ClassVar, Literal

from pydantic import Field

from chatbus.contracts.base import Message

DOMAIN_STREAM = "DOMAIN_EVENTS"
DOMAIN_EVENT_SUBJECTS = ("sales.>", "support.>")
"""Every domain event subject lives under one of these (no other chatbus subject does)."""

_ID = Field(min_length=1, max_length=200)


def new_event_id() -> str:
    return uuid.uuid4().hex


class DomainEvent(Message):
    """What every domain event carries: who it is about and which agent said so."""

    event_id: str = Field(default_factory=new_event_id, min_length=1, max_length=200)
    tenant_id: str = "default"
    session_id: str | None = None
    user_id: str | None = None
    source: str = Field(min_length=1, max_length=100)  # the agent that published it
    ts: float = Field(default_factory=time.time)


class LeadQualified(DomainEvent):
    """Sales found that a customer is a real prospect for a plan."""

    subject: ClassVar[str] = "sales.lead.qualified.v1"

    lead_id: str = _ID
    company: str = Field(min_length=1, max_length=200)
    plan: str = Field(min_length=1, max_length=50)
    seats: int = Field(ge=1, le=1_000_000)
    score: int = Field(ge=0, le=100)


class InvoiceCreated(DomainEvent):
    """Sales issued an invoice (the customer confirmed its draft)."""

    subject: ClassVar[str] = "sales.invoice.created.v1"

    invoice_id: str = _ID
    plan: str = Field(min_length=1, max_length=50)
    seats: int = Field(ge=1, le=1_000_000)
    amount_usd: float = Field(ge=0)  # the amount, in ``currency`` (named when only USD existed)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class TicketOpened(DomainEvent):
    """Support opened a ticket for a customer's problem."""

    subject: ClassVar[str] = "support.ticket.opened.v1"

    ticket_id: str = _ID
    title: str = Field(min_length=1, max_length=300)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    order_id: str | None = None


ALL_EVENTS: tuple[type[DomainEvent], ...] = (LeadQualified, InvoiceCreated, TicketOpened)
