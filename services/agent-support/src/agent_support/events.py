"""What the support agent does with other agents' events."""

from __future__ import annotations

from chatbus.agent.events import EventContext, on_event
from chatbus.contracts.events import LeadQualified


@on_event(LeadQualified)
async def remember_qualified_lead(event: LeadQualified, ctx: EventContext) -> None:
    """So a later support chat knows the customer is talking to sales about a plan."""
    text = (
        f"Sales qualified {event.company} as a lead for the {event.plan} plan "
        f"({event.seats} seats, lead {event.lead_id})."
    )
    await ctx.notes.add(event, text)
    await ctx.remember(event, text)


SUBSCRIPTIONS = (remember_qualified_lead,)
