"""The support agent's tools: look up one of the customer's orders, open a ticket."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from chatbus.agent.records import DemoRecord, without_owner
from chatbus.agent.tool_args import RecordRef
from chatbus.agent.tools import ToolContext, tool
from chatbus.contracts.events import TicketOpened

# Demo orders, seeded only in development for the tenant/user pairs DEMO_DATA names.
DEMO_ORDERS = (
    DemoRecord("order", "4471", {"status": "shipped", "item": "Chatbus Team plan, 10 seats",
                                 "carrier": "DHL", "tracking": "JD014600006281"}),
    DemoRecord("order", "4472", {"status": "processing", "item": "Chatbus Starter plan",
                                 "carrier": None, "tracking": None}),
    DemoRecord("order", "4473", {"status": "delivered", "item": "Chatbus hardware key",
                                 "carrier": "UPS", "tracking": "1Z999AA10123456784"}),
    DemoRecord("order", "4474", {"status": "cancelled",
                                 "item": "Chatbus Enterprise plan, 50 seats",
                                 "carrier": None, "tracking": None}),
)  # fmt: skip

OrderId = Annotated[str, RecordRef("order")]  # the runtime checks it is the customer's order


class LookupOrder(BaseModel):
    order_id: OrderId = Field(
        min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$", description="The order number"
    )


@tool
async def lookup_order(args: LookupOrder, ctx: ToolContext) -> dict[str, Any]:
    """Look up one of the customer's orders: status, item, carrier and tracking number."""
    return without_owner(ctx.refs["order_id"])


class OpenTicket(BaseModel):
    title: str = Field(min_length=3, max_length=200, description="One line: what is wrong")
    description: str = Field(min_length=1, max_length=4000, description="Details for the team")
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    order_id: OrderId | None = Field(
        default=None, max_length=40, description="The customer's related order, if any"
    )


@tool
async def open_ticket(args: OpenTicket, ctx: ToolContext) -> dict[str, Any]:
    """Open a support ticket for a problem the conversation cannot solve right away."""
    ticket_id = f"T-{uuid.uuid4().hex[:8].upper()}"
    record = await ctx.store().create("ticket", ticket_id, {**args.model_dump(), "status": "open"})
    await ctx.publish_event(
        TicketOpened(
            **ctx.origin(),
            ticket_id=ticket_id,
            title=args.title,
            priority=args.priority,
            order_id=args.order_id,
        )
    )
    return {"ticket_id": ticket_id, "status": record["status"], "priority": args.priority}


TOOLS = (lookup_order, open_ticket)
