"""One message at a time per session, in arrival order, across every gateway replica.

A session's messages wait in a Redis list; the head has the turn, under a lease its gateway
renews while the agent answers. Leaving (answered, failed, or the caller gone) takes a message
out of the list and hands the lease to the next head, which is woken over NATS. A head whose
lease ran out (its gateway died) is dropped by the next waiter that looks; a waiter gives up at
its message's deadline. One Lua script does every step, atomically, on the session's two keys
(one hash tag: one Redis Cluster slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatbus.bus import Bus
from chatbus.deadline import remaining
from chatbus.errors import BusUnavailable
from chatbus.redis_link import RedisLink
from chatbus_gateway.api.errors import ApiError

log = logging.getLogger("chatbus.gateway.order")

# KEYS: the session's queue (a list of message ids) and its head's lease (the head's id, PX).
# ARGV: "join" | "check" | "leave", the message's id, the lease in ms.
# Reply: 1 it is this message's turn (the lease is its own), 0 wait, 2 wait and wake the
# session (the turn passed to another waiter).
STEP = """
local queue, lease, op, me, ms = KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3])
if op == 'join' then redis.call('RPUSH', queue, me) end
local head = redis.call('LINDEX', queue, 0)
if op == 'leave' then
  redis.call('LREM', queue, 1, me)
  if head ~= me then return 0 end
else
  redis.call('PEXPIRE', queue, 3 * ms)
  if head == me then
    redis.call('SET', lease, me, 'PX', ms)
    return 1
  end
  if not redis.call('LPOS', queue, me) then return 1 end
  if redis.call('EXISTS', lease) == 1 then return 0 end
  redis.call('LPOP', queue)
end
head = redis.call('LINDEX', queue, 0)
if not head then
  redis.call('DEL', lease)
  return 0
end
redis.call('SET', lease, head, 'PX', ms)
if head == me then return 1 end
return 2
"""
MINE, WAIT, WAKE = 1, 0, 2

WAKE_SUBJECT = "gateway.turn.v1"


class SessionOrder:
    def __init__(self, redis: RedisLink, bus: Bus, prefix: str, lease_s: float) -> None:
        self.bus = bus
        self.prefix = f"{prefix}turn:"
        self.lease_s = lease_s
        self.lease_ms = max(int(lease_s * 1000), 1)
        self._step = redis.script(STEP)
        self._renewing: dict[str, asyncio.Task[None]] = {}  # turns held longer than lease/3
        # A message's id in a queue: this process's random name and a count (no syscall).
        name = secrets.token_hex(6)
        self._ids = (f"{name}.{n:x}" for n in itertools.count())

    def keys(self, tenant: str, session: str) -> list[str]:
        """The session's queue and lease keys."""
        return self._keys(self._tag(tenant, session))

    @asynccontextmanager
    async def turn(self, tenant: str, session: str, deadline: float | None) -> AsyncIterator[None]:
        """Hold the session's turn for the body of the ``async with``; waits for the earlier
        messages at most until ``deadline`` (then 503)."""
        tag, me = self._tag(tenant, session), next(self._ids)
        renew: asyncio.TimerHandle | None = None
        try:
            if await self._run(tag, "join", me) != MINE:
                await self._wait(tag, me, deadline)
            renew = asyncio.get_running_loop().call_later(self.lease_s / 3, self._renew, tag, me)
            yield
        finally:
            if renew is not None:
                renew.cancel()
            if (renewing := self._renewing.pop(me, None)) is not None:
                renewing.cancel()
            try:
                await self._run(tag, "leave", me)
            except Exception as e:  # Redis away: the lease lapses and the next one goes
                log.warning("could not hand a session's turn on: %s", e)

    async def _run(self, tag: str, op: str, me: str) -> int:
        got = int(await self._step(keys=self._keys(tag), args=[op, me, self.lease_ms]))
        if got == WAKE:
            with contextlib.suppress(Exception):  # a lost wake-up costs a third of a lease
                await self.bus.wake(f"{WAKE_SUBJECT}.{tag}")
        return got

    async def _wait(self, tag: str, me: str, deadline: float | None) -> None:
        woken = asyncio.Event()
        try:
            # Subscribed (and flushed) before it looks: no wake-up is missed.
            async with self.bus.listen(lambda _: woken.set(), f"{WAKE_SUBJECT}.{tag}"):
                while True:
                    woken.clear()
                    if await self._run(tag, "check", me) == MINE:
                        return
                    if (left := remaining(deadline)) <= 0:
                        raise ApiError(
                            503,
                            "an earlier message of this session is still being answered; try again",
                            type="unavailable",
                            headers={"Retry-After": "1"},
                        )
                    # Looked at again when woken, or after a third of a lease (a dead head).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), min(left, self.lease_s / 3))
        except BusUnavailable as e:
            raise ApiError(
                503, "the message bus is unavailable, try again", type="unavailable"
            ) from e

    def _renew(self, tag: str, me: str) -> None:
        self._renewing[me] = asyncio.ensure_future(self._keep(tag, me))

    async def _keep(self, tag: str, me: str) -> None:
        """Renew a turn held long (the agent still answering), every third of the lease."""
        while True:
            try:
                await self._run(tag, "check", me)
            except Exception as e:  # Redis away: the lease may lapse; the answer goes on
                log.warning("could not renew a session's turn: %s", e)
            await asyncio.sleep(self.lease_s / 3)

    def _tag(self, tenant: str, session: str) -> str:
        return hashlib.sha1(f"{self.prefix}{tenant}\0{session}".encode()).hexdigest()

    def _keys(self, tag: str) -> list[str]:
        # One hash tag: both keys in one Redis Cluster slot, as a script needs.
        return [f"{self.prefix}{{{tag}}}", f"{self.prefix}{{{tag}}}:lease"]
