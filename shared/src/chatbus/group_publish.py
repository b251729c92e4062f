"""Group commit for durable events: what arrives while a JetStream write is in flight goes out
together in the next one.

Each JetStream write with ``sync_interval: always`` costs the server an fsync (~0.15 ms of its
CPU, ~1 ms of wall time per stream), and a work-queue stream pays about as much again when the
consumer's ack deletes it. :class:`GroupPublisher` keeps one write in flight per stream: an
event submitted while it is idle is sent at once, alone (no added latency); events submitted
meanwhile wait for it and then leave as one batch message. Each caller still returns only once
its own event is on the stream (or gets the write's error), so "acknowledged = durable" holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("chatbus.group_publish")

E = TypeVar("E")

# send(events, deadline): one durable write of these events; raises when it did not happen.
Send = Callable[[list[E], float | None], Awaitable[None]]


@dataclass
class _Waiting(Generic[E]):
    event: E
    size: int
    deadline: float | None
    done: asyncio.Future[None]


class GroupPublisher(Generic[E]):
    """Batches events across concurrent callers into as few writes as the stream allows."""

    def __init__(self, send: Send[E], *, max_events: int = 256, max_bytes: int = 256_000) -> None:
        self.send = send
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._queue: list[_Waiting[E]] = []
        self._writer: asyncio.Task[None] | None = None

    async def publish(self, event: E, *, size: int = 0, deadline: float | None = None) -> None:
        """Return once ``event`` is written (alone or in a batch); raise the write's error."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(event, size, deadline, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        await asyncio.shield(done)  # a caller that gives up does not cancel the others' write

    async def _write_all(self) -> None:
        await asyncio.sleep(0)  # events of the same loop turn (one read burst) go together
        while self._queue:
            group = self._take()
            deadlines = [w.deadline for w in group if w.deadline is not None]
            try:
                await self.send([w.event for w in group], min(deadlines) if deadlines else None)
            except Exception as e:
                for w in group:
                    if not w.done.done():
                        w.done.set_exception(e)
                        w.done.exception()  # marked retrieved: a caller may be gone
            else:
                for w in group:
                    if not w.done.done():
                        w.done.set_result(None)

    def _take(self) -> list[_Waiting[E]]:
        group, size = [self._queue[0]], self._queue[0].size
        for w in self._queue[1 : self.max_events]:
            if size + w.size > self.max_bytes:
                break
            group.append(w)
            size += w.size
        del self._queue[: len(group)]
        return group
