"""Work stops when its caller is gone, and is skipped when it arrives after its deadline."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import pytest

from chatbus.bus import Bus
from chatbus.contracts.base import Message
from chatbus.deadline import after
from chatbus.errors import RemoteError


class Work(Message):
    subject: ClassVar[str] = "test.work.v1"
    n: int


class Done(Message):
    n: int


async def test_a_handler_is_cancelled_soon_after_its_caller_gives_up(bus: Bus, uid: str) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def slow(msg: Work) -> Done:
        started.set()
        try:
            await asyncio.Event().wait()  # works until told to stop
        except asyncio.CancelledError:
            stopped.set()
            raise
        return Done(n=msg.n)

    subject = f"test.{uid}.work"
    await bus.subscribe(subject, Work, slow)
    caller = asyncio.ensure_future(
        bus.request_watched(Work(n=1), Done, subject, deadline=after(60))
    )
    await asyncio.wait_for(started.wait(), 10)
    gave_up = time.monotonic()
    caller.cancel()  # the user closed the connection; the gateway stops waiting
    await asyncio.wait_for(stopped.wait(), 10)  # the next beat tells the worker
    assert time.monotonic() - gave_up < 3.0


async def test_a_request_past_its_deadline_is_not_worked_on(bus: Bus, uid: str) -> None:
    ran: list[int] = []

    async def handler(msg: Work) -> Done:
        ran.append(msg.n)
        return Done(n=msg.n)

    subject = f"test.{uid}.late"
    await bus.subscribe(subject, Work, handler)
    # A deadline that passes while the message is on its way (a busy caller's clock).
    headers = {"Chatbus-Deadline": f"{time.time() - 1:.3f}"}
    with pytest.raises(RemoteError) as e:
        await bus.request(Work(n=2), Done, subject, timeout=5, headers=headers)
    assert e.value.code == "timeout" and ran == []
