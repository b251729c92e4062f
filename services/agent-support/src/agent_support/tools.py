"""The support agent's tools: look up an order, open a ticket."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from chatbus.agent.tools import ToolContext, ToolError, tool
from chatbus.contracts.events import TicketOpened

# A small demo catalogue: an order looked up for the first time is stored from here.
DEMO_ORDERS: dict[str, dict[str, Any]] = {
    "4471": {
        "status": "shipped",
        "item": "Chatbus Team plan, 10 seats",
        "carrier": "DHL",
        "tracking": "JD014600006281",
    },
    "4472": {
        "status": "processing",
        "item": "Chatbus Starter plan",
        "carrier": None,
        "tracking": None,
    },
    "4473": {
        "status": "delivered",
        "item": "Chatbus hardware key",
        "carrier": "UPS",
        "tracking": "1Z999AA10123456784",
    },
    "4474": {
        "status": "cancelled",
        "item": "Chatbus Enterprise plan, 50 seats",
        "carrier": None,
        "tracking": None,
    },
}


class LookupOrder(BaseModel):
    order_id: str = Field(
        min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$", description="The order number"
    )


@tool
async def lookup_order(args: LookupOrder, ctx: ToolContext) -> dict[str, Any]:
    """Look up an order by its number: status, item, carrier and tracking number."""
    store = ctx.store()
    order = await store.get(ctx.req.tenant_id, "order", args.order_id)
    if order is None and args.order_id in DEMO_ORDERS:
        order = await store.put(
            ctx.req.tenant_id, "order", args.order_id, DEMO_ORDERS[args.order_id]
        )
    if order is None:
        raise ToolError(f"there is no order {args.order_id}; ask the customer to check it")
    return order


class OpenTicket(BaseModel):
    title: str = Field(min_length=3, max_length=200, description="One line: what is wrong")
    description: str = Field(min_length=1, max_length=4000, description="Details for the team")
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    order_id: str | None = Field(default=None, max_length=40, description="Related order, if any")


@tool
async def open_ticket(args: OpenTicket, ctx: ToolContext) -> dict[str, Any]:
    """Open a support ticket for a problem the conversation cannot solve right away."""
    ticket_id = f"T-{uuid.uuid4().hex[:8].upper()}"
    record = await ctx.store().put(
        ctx.req.tenant_id,
        "ticket",
        ticket_id,
        {**args.model_dump(), "status": "open"},
        session_id=ctx.req.session_id,
        user_id=ctx.req.user_id,
    )
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
