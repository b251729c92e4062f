"""The dead-letter stream's contents: listed a page at a time, and re-driven one by one.

Messages are parked there by :func:`chatbus.jetstream.dead_letter`. Listing walks the stream
with "next message at or after sequence N", so removed (re-driven) entries cost nothing and
every entry is reachable however many there are: ask again with ``after`` = the last ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats.js.errors
from nats.js.api import RawStreamMsg

from chatbus.bus import Bus, trace_headers
from chatbus.jetstream import (
    DLQ_PREFIX,
    DLQ_STREAM,
    H_CONSUMER,
    H_DELIVERIES,
    H_REASON,
    H_STREAM,
    H_SUBJECT,
)

NO_MESSAGE = 10057  # JetStream's err_code for "no message found"


async def redrive(bus: Bus, stream_seq: int) -> str:
    """Publish a parked message back to its original subject and remove it from the DLQ."""
    raw = await bus.js.get_msg(DLQ_STREAM, stream_seq)
    headers = dict(raw.headers or {})
    subject = headers.get(H_SUBJECT) or (raw.subject or "").removeprefix(DLQ_PREFIX)
    for h in (H_REASON, H_SUBJECT, H_STREAM, H_CONSUMER, H_DELIVERIES, "Nats-Msg-Id"):
        headers.pop(h, None)
    # One id per parked entry: concurrent redrives of it publish it once (JetStream de-dup).
    headers["Nats-Msg-Id"] = f"redrive:{stream_seq}"
    await bus.js.publish(subject, raw.data or b"", headers=trace_headers(headers))
    try:
        await bus.js.delete_msg(DLQ_STREAM, stream_seq)
    except nats.js.errors.APIError as e:
        if e.err_code != NO_MESSAGE:
            raise  # else a concurrent redrive removed it first: the entry is re-driven once
    return subject


@dataclass
class Parked:
    seq: int
    subject: str
    reason: str
    deliveries: int
    consumer: str
    data: bytes


@dataclass
class Page:
    items: list[Parked]
    # Pass as ``after`` to get the next page; None when this page reached the end.
    next_after: int | None


async def page_dead_letters(bus: Bus, *, after: int = 0, limit: int = 100) -> Page:
    """Up to ``limit`` parked messages with a sequence above ``after``, oldest first."""
    items: list[Parked] = []
    seq = after + 1
    while len(items) <= limit:  # one more than asked: tells whether a next page exists
        try:
            raw = await bus.js.get_msg(DLQ_STREAM, seq, subject=f"{DLQ_PREFIX}>", next=True)
        except nats.js.errors.NotFoundError:
            break
        if raw.seq is None:
            break
        items.append(_parked(raw, raw.seq))
        seq = raw.seq + 1
    more = len(items) > limit
    items = items[:limit]
    return Page(items, items[-1].seq if more else None)


async def get_dead_letter(bus: Bus, seq: int) -> Parked | None:
    """The parked message at ``seq``; None when there is none (re-driven, or never was)."""
    try:
        raw = await bus.js.get_msg(DLQ_STREAM, seq)
    except (nats.js.errors.NotFoundError, nats.js.errors.BadRequestError):
        return None
    return _parked(raw, seq)


def _parked(raw: RawStreamMsg, seq: int) -> Parked:
    h = raw.headers or {}
    return Parked(
        seq=seq,
        subject=h.get(H_SUBJECT, ""),
        reason=h.get(H_REASON, ""),
        deliveries=int(h.get(H_DELIVERIES, "0") or 0),
        consumer=h.get(H_CONSUMER, ""),
        data=raw.data or b"",
    )


async def list_dead_letters(bus: Bus, limit: int = 10_000) -> list[Parked]:
    """The oldest ``limit`` parked messages, read page by page."""
    out: list[Parked] = []
    after: int | None = 0
    while after is not None and len(out) < limit:
        page = await page_dead_letters(bus, after=after, limit=min(1000, limit - len(out)))
        out += page.items
        after = page.next_after
    return out
