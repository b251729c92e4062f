"""What the sales agent does with other agents' events."""

from __future__ import annotations

from chatbus.agent.events import EventContext, on_event
from chatbus.contracts.events import TicketOpened


@on_event(TicketOpened)
async def note_open_ticket(event: TicketOpened, ctx: EventContext) -> None:
    """So sales does not push an upgrade on a customer who has an open problem."""
    text = f"Support opened ticket {event.ticket_id} ({event.priority}): {event.title}."
    await ctx.notes.add(event, text)


SUBSCRIPTIONS = (note_open_ticket,)
