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
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from chatbus.contracts.base import ErrorReply, Message
from chatbus.deadline import DEADLINE_HEADER, parse_header, remaining
from chatbus.errors import InstanceLost

log = logging.getLogger("chatbus.progress")

PROGRESS_HEADER = "Chatbus-Progress"
BEAT_S = 1.0
# Three beats missed: the instance is gone (a busy event loop may delay one beat, not three).
LOST_AFTER_S = 3.5
GONE = b"gone"

T = TypeVar("T")


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


async def watch_reply(
    progress: ProgressInbox,
    send: Callable[[dict[str, str]], Awaitable[T]],
    *,
    subject: str,
    deadline: float,
    lost_after_s: float = LOST_AFTER_S,
) -> T:
    """The caller's side: ``send(headers)`` and wait for its reply while beats keep coming."""
    async with progress.watch() as (inbox, beat):
        reply = asyncio.ensure_future(send({PROGRESS_HEADER: inbox}))
        try:
            while True:
                beat.clear()
                waiter = asyncio.ensure_future(beat.wait())
                wait_s = min(lost_after_s, remaining(deadline) + 0.5)
                done, _ = await asyncio.wait(
                    {reply, waiter}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                if reply in done:
                    return reply.result()
                if waiter in done:
                    continue
                if remaining(deadline) <= 0:
                    return await reply  # its own timeout ends it now
                raise InstanceLost(subject)
        finally:
            if not reply.done():
                reply.cancel()


async def run_in_time(
    nc: NATS,
    subject: str,
    headers: Mapping[str, str],
    work: Awaitable[Message | None],
    waited: float,
) -> Message | None:
    """The responder's side: run ``work`` within the request's deadline (``Chatbus-Deadline``),
    beating while it runs when the caller asked (``Chatbus-Progress``)."""
    deadline = parse_header(headers.get(DEADLINE_HEADER))
    if deadline is not None and remaining(deadline) <= 0:
        log.info("skipped a request on %s: its caller stopped waiting", subject)
        if inspect.iscoroutine(work):
            work.close()  # never started
        return ErrorReply(code="timeout", message="the deadline passed before the work began")
    task = asyncio.ensure_future(work)
    beats = None
    if inbox := headers.get(PROGRESS_HEADER):
        first = 0.0 if waited > BEAT_S / 2 else BEAT_S
        beats = asyncio.ensure_future(beat_until_done(nc, inbox, task, first_s=first))
    try:
        async with asyncio.timeout(None if deadline is None else remaining(deadline)):
            return await task
    except TimeoutError:
        log.info("stopped a request on %s at its deadline", subject)
        return ErrorReply(code="timeout", message="the request's deadline passed")
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled ourselves
        return None  # the caller is gone: nobody to answer
    finally:
        if not task.done():
            task.cancel()
        if beats is not None:
            beats.cancel()
