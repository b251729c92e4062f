"""The sales agent's tools: qualify a lead, draft an invoice the customer then confirms."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from chatbus.agent.tools import ToolContext, tool
from chatbus.contracts.events import InvoiceCreated, LeadQualified

Plan = Literal["starter", "team", "enterprise"]
# Per seat and month, the same figure in every currency a tenant accepts.
PRICE_PER_SEAT_USD: dict[str, float] = {"starter": 0.0, "team": 15.0, "enterprise": 45.0}
QUALIFIED_SCORE = 50


class QualifyLead(BaseModel):
    company: str = Field(min_length=1, max_length=200, description="The customer's company")
    plan: Plan = Field(description="The plan they are interested in")
    seats: int = Field(ge=1, le=100_000, description="How many users")
    budget_usd_per_month: float | None = Field(default=None, ge=0)
    timeline_months: int | None = Field(default=None, ge=0, le=60, description="When to buy")


def score(args: QualifyLead) -> int:
    """0-100: bigger plans and teams, a budget that covers them and a near date score higher."""
    points = {"starter": 10, "team": 30, "enterprise": 50}[args.plan]
    points += min(20, args.seats // 5)
    cost = PRICE_PER_SEAT_USD[args.plan] * args.seats
    if args.budget_usd_per_month is not None and args.budget_usd_per_month >= cost:
        points += 15
    if args.timeline_months is not None and args.timeline_months <= 3:
        points += 15
    return min(100, points)


@tool
async def qualify_lead(args: QualifyLead, ctx: ToolContext) -> dict[str, Any]:
    """Record a prospect and score it; a qualified lead is announced to the other teams."""
    lead_id = f"L-{uuid.uuid4().hex[:8].upper()}"
    points = score(args)
    qualified = points >= QUALIFIED_SCORE
    await ctx.store().create(
        "lead", lead_id, {**args.model_dump(), "score": points, "qualified": qualified}
    )
    if qualified:
        await ctx.publish_event(
            LeadQualified(
                **ctx.origin(),
                lead_id=lead_id,
                company=args.company,
                plan=args.plan,
                seats=args.seats,
                score=points,
            )
        )
    return {"lead_id": lead_id, "score": points, "qualified": qualified}


class CreateInvoice(BaseModel):
    plan: Plan
    seats: int = Field(ge=1, le=100_000)
    months: int = Field(default=1, ge=1, le=36, description="Months billed up front")
    currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$", description="e.g. USD, EUR")


async def issue_invoice(draft: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The customer confirmed the draft: issue it and tell the other teams."""
    await ctx.publish_event(
        InvoiceCreated(
            **ctx.origin(),
            invoice_id=draft["id"],
            plan=draft["plan"],
            seats=draft["seats"],
            amount_usd=draft["amount"],
            currency=draft["currency"],
        )
    )
    return {"status": "issued"}


@tool(on_confirm=issue_invoice)
async def create_invoice(args: CreateInvoice, ctx: ToolContext) -> dict[str, Any]:
    """Draft an invoice for a plan, billed to the customer in this conversation.

    It is issued only after the customer confirms it with the code this returns."""
    amount = PRICE_PER_SEAT_USD[args.plan] * args.seats * args.months
    invoice_id = f"INV-{uuid.uuid4().hex[:8].upper()}"
    data = args.model_dump(exclude={"currency"})
    return await ctx.propose("invoice", invoice_id, data, amount=amount, currency=args.currency)


TOOLS = (qualify_lead, create_invoice)
