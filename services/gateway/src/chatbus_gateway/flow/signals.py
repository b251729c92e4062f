"""Waiting across gateway replicas: Redis holds the state, a NATS subject says "look again".

A waiter subscribes first, then checks the state, then sleeps until a signal or a short
re-check interval, so a signal sent between the check and the wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.msg import Msg

from chatbus.bus import Bus

T = TypeVar("T")

SUBJECT = "gateway.signal.v1"


def subject_for(topic: str) -> str:
    return f"{SUBJECT}.{topic}"


async def notify(bus: Bus, topic: str) -> None:
    with contextlib.suppress(Exception):  # a lost signal only costs one re-check interval
        await bus.nc.publish(subject_for(topic), b"")


async def wait_until(
    bus: Bus,
    topic: str,
    check: Callable[[], Awaitable[T | None]],
    timeout: float,
    recheck_s: float = 1.0,
) -> T | None:
    """The first non-None ``check()`` result, re-checked on each signal; None after ``timeout``."""
    woke = asyncio.Event()

    async def on_signal(msg: Msg) -> None:
        woke.set()

    sub = await bus.nc.subscribe(subject_for(topic), cb=on_signal)
    try:
        deadline = time.monotonic() + timeout
        while True:
            woke.clear()
            result = await check()
            if result is not None:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woke.wait(), min(left, recheck_s))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
