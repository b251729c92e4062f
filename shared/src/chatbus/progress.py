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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from chatbus.contracts.base import ErrorReply, Message
from chatbus.deadline import DEADLINE_HEADER, bound, parse_header, remaining
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
        self._beats: dict[str, int] = {}  # token -> beats heard
        self._count = 0

    async def open(self) -> str:
        """A fresh token; its inbox subject is ``subject(token)``."""
        if self._sub is None:
            self.prefix = self.nc.new_inbox()
            self._sub = await self.nc.subscribe(self.prefix + ".*", cb=self._on_beat)
        self._count += 1
        token = f"{self._count:x}"
        self._beats[token] = 0
        return token

    def subject(self, token: str) -> str:
        return f"{self.prefix}.{token}"

    def beats(self, token: str) -> int:
        return self._beats.get(token, 0)

    def close(self, token: str) -> None:
        """Forget ``token``: a responder still beating on it is told its caller is gone."""
        self._beats.pop(token, None)

    async def _on_beat(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        known = token in self._beats
        if known:
            self._beats[token] += 1
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, b"" if known else GONE)


async def beat_until_done(nc: NATS, inbox: str, work: asyncio.Task[Any]) -> bool:
    """Beat ``inbox`` every :data:`BEAT_S` while ``work`` runs; cancel it when its caller left.

    True when it cancelled ``work`` for that reason.
    """
    while not work.done():
        try:
            answer = await nc.request(inbox, b"", timeout=BEAT_S)
            gone = answer.data == GONE
        except nats.errors.NoRespondersError:
            gone = True
        except (nats.errors.TimeoutError, nats.errors.Error, OSError):
            gone = False  # a busy or reconnecting caller is not a gone one
        if gone:
            log.info("the caller stopped waiting: work cancelled")
            work.cancel()
            return True
        if not work.done():
            await asyncio.wait({work}, timeout=BEAT_S)
    return False


async def watch_reply(
    progress: ProgressInbox,
    send: Callable[[dict[str, str]], Awaitable[T]],
    *,
    subject: str,
    deadline: float,
    lost_after_s: float = LOST_AFTER_S,
) -> T:
    """The caller's side: ``send(headers)`` and wait for its reply while beats keep coming.

    One timer per request, no extra task: fast replies cost a dict entry and a timer.
    """
    token = await progress.open()
    me = asyncio.current_task()
    assert me is not None
    loop = asyncio.get_running_loop()
    seen = 0
    lost = False

    def check() -> None:
        nonlocal seen, lost
        beats = progress.beats(token)
        if beats != seen or remaining(deadline) <= 0:
            seen = beats  # alive (or the request's own timeout is about to end it)
            timer[0] = loop.call_later(lost_after_s, check)
            return
        lost = True
        me.cancel()

    timer = [loop.call_later(lost_after_s, check)]
    try:
        return await send({PROGRESS_HEADER: progress.subject(token)})
    except asyncio.CancelledError:
        if lost and me.uncancel() == 0:
            raise InstanceLost(subject) from None
        raise
    finally:
        timer[0].cancel()
        progress.close(token)


async def run_in_time(
    nc: NATS,
    subject: str,
    headers: Mapping[str, str],
    work: Awaitable[Message | None],
    waited: float,
) -> Message | None:
    """The responder's side: run ``work`` within the request's deadline (``Chatbus-Deadline``),
    beating while it runs when the caller asked (``Chatbus-Progress``).

    No extra task for fast work: beating starts after :data:`BEAT_S` (at once when the message
    waited for a free slot), and a caller that left cancels the task running this.
    """
    deadline = parse_header(headers.get(DEADLINE_HEADER))
    if deadline is not None and remaining(deadline) <= 0:
        log.info("skipped a request on %s: its caller stopped waiting", subject)
        if inspect.iscoroutine(work):
            work.close()  # never started
        return ErrorReply(code="timeout", message="the deadline passed before the work began")
    me = asyncio.current_task()
    assert me is not None
    beats: list[asyncio.Task[bool]] = []
    starter = None
    if inbox := headers.get(PROGRESS_HEADER):

        def start() -> None:
            beats.append(asyncio.ensure_future(beat_until_done(nc, inbox, me)))

        loop = asyncio.get_running_loop()
        starter = loop.call_soon(start) if waited > BEAT_S / 2 else loop.call_later(BEAT_S, start)
    try:
        with bound(deadline):  # what the work's Redis calls may wait for a failover
            async with asyncio.timeout(None if deadline is None else remaining(deadline)):
                return await work
    except TimeoutError:
        log.info("stopped a request on %s at its deadline", subject)
        return ErrorReply(code="timeout", message="the request's deadline passed")
    except asyncio.CancelledError:
        gone = bool(beats) and beats[0].done() and not beats[0].cancelled() and beats[0].result()
        if gone and me.uncancel() == 0:
            return None  # the caller is gone (the beat cancelled us): nobody to answer
        raise
    finally:
        if starter is not None:
            starter.cancel()
        for task in beats:
            task.cancel()
