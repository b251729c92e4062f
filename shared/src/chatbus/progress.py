"""Liveness of a request in flight: the responder beats while it works, the caller answers.

A caller that wants to notice a dead responder in seconds (rather than at its deadline) sends
its request with a ``Chatbus-Progress`` header naming an inbox of its own. The responder's bus
requests that inbox every :data:`BEAT_S` while the handler runs (the first beat at once when the
message had to wait for a free slot). The caller's answer tells the responder whether anyone
still waits:

- an empty answer: keep going;
- ``gone``, or no responders on the inbox: the caller stopped waiting (it timed out, retried
  elsewhere, or died) -- the responder cancels the work, which then writes nothing.

On the caller's side, no reply and no beat for :data:`LOST_AFTER_S` means the instance that
took the request died (``kill -9``, a lost host): :class:`~chatbus.errors.InstanceLost` is
raised and the caller may send the request again, to another instance of the queue group.
Fast answers (under a second) cost nothing: no beat is ever sent for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger("chatbus.progress")

PROGRESS_HEADER = "Chatbus-Progress"
BEAT_S = 1.0
# Three beats missed: the instance is gone (a busy event loop may delay one beat, not three).
LOST_AFTER_S = 3.5
GONE = b"gone"


class ProgressInbox:
    """The caller's side: one wildcard subscription per connection, one token per request."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.prefix = ""
        self._sub: Subscription | None = None
        self._waiting: dict[str, asyncio.Event] = {}
        self._count = 0

    async def _ensure(self) -> None:
        if self._sub is None:
            self.prefix = self.nc.new_inbox()
            self._sub = await self.nc.subscribe(self.prefix + ".*", cb=self._on_beat)

    async def _on_beat(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        event = self._waiting.get(token)
        if event is not None:
            event.set()
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, b"" if event is not None else GONE)

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[tuple[str, asyncio.Event]]:
        """A fresh inbox subject and the event its beats set; forgotten on exit (then ``gone``)."""
        await self._ensure()
        self._count += 1
        token = f"{self._count:x}"
        event = asyncio.Event()
        self._waiting[token] = event
        try:
            yield f"{self.prefix}.{token}", event
        finally:
            self._waiting.pop(token, None)


async def beat_until_done(
    nc: NATS, inbox: str, work: asyncio.Task[object], *, first_s: float
) -> None:
    """Beat ``inbox`` while ``work`` runs; cancel ``work`` when its caller is gone."""
    delay = first_s
    while not work.done():
        if delay:
            done, _ = await asyncio.wait({work}, timeout=delay)
            if done:
                return
        delay = BEAT_S
        try:
            answer = await nc.request(inbox, b"", timeout=BEAT_S)
        except nats.errors.NoRespondersError:
            answer = None
        except (nats.errors.TimeoutError, nats.errors.Error, OSError):
            continue  # a busy or reconnecting caller is not a gone one
        if answer is None or answer.data == GONE:
            log.info("the caller stopped waiting: work cancelled")
            work.cancel()
            return
