"""One message at a time per session, in arrival order, across every gateway replica.

A session has a ticket counter and a "now serving" number in Redis. A request takes a ticket
(INCR) and goes when "now serving" reaches it; when done it advances "now serving" and, if
someone waits, signals them over NATS. A turn held longer than ``turn_timeout_s`` (its gateway
crashed) is skipped, so a crash never wedges a session.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from chatbus.bus import Bus
from chatbus.redis_link import RedisLink
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.flow import signals

# take(next, serving, ttl_ms) -> {ticket, serving}. A function, so the rate limiter's script
# can take the turn in the same round trip as it counts the request.
TAKE_FN = """
local function take(next_key, serving_key, ttl)
  local t = redis.call('INCR', next_key)
  redis.call('PEXPIRE', next_key, ttl)
  local s = tonumber(redis.call('GET', serving_key) or '0')
  if s == 0 then s = t; redis.call('SET', serving_key, t) end
  redis.call('PEXPIRE', serving_key, ttl)
  return {t, s}
end
"""
TAKE = TAKE_FN + "return take(KEYS[1], KEYS[2], ARGV[1])"

# KEYS: next, serving, abandoned. ARGV: ticket, ttl_ms, "done" | "abandon".
# Done: advance past the ticket (and past abandoned ones). Abandon before the turn came: mark
# it so it is passed over. Returns 1 when a later ticket waits.
DONE = """
local t = tonumber(ARGV[1])
local s = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[3] == 'abandon' and s ~= t then
  redis.call('SADD', KEYS[3], t)
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
elseif s == t then
  s = t + 1
  while redis.call('SREM', KEYS[3], s) == 1 do s = s + 1 end
  redis.call('SET', KEYS[2], s, 'PX', ARGV[2])
end
if tonumber(redis.call('GET', KEYS[1]) or '0') > t then return 1 end
return 0
"""

# KEYS: serving, abandoned. ARGV: the stuck value. Skips only if nobody moved it meanwhile.
SKIP = """
local s = tonumber(redis.call('GET', KEYS[1]) or '0')
if s == tonumber(ARGV[1]) then
  s = s + 1
  while redis.call('SREM', KEYS[2], s) == 1 do s = s + 1 end
  redis.call('SET', KEYS[1], s, 'KEEPTTL')
end
return s
"""


@dataclass(frozen=True)
class Ticket:
    """A place in a session's queue: ``number`` goes when "now serving" reaches it."""

    keys: tuple[str, str, str]  # next, serving, abandoned
    topic: str
    number: int
    serving: int


class SessionOrder:
    def __init__(self, redis: RedisLink, bus: Bus, prefix: str, turn_timeout_s: float) -> None:
        self.redis = redis
        self.bus = bus
        self.prefix = f"{prefix}turn:"
        self.turn_timeout_s = turn_timeout_s
        self.ttl_ms = int(turn_timeout_s * 4 * 1000)
        self._take = redis.script(TAKE)
        self._done = redis.script(DONE)
        self._skip = redis.script(SKIP)

    def place(self, tenant: str, session: str) -> tuple[tuple[str, str, str], str]:
        """The session's Redis keys and its signal topic."""
        topic = hashlib.sha1(f"{self.prefix}{tenant}\0{session}".encode()).hexdigest()
        base = f"{self.prefix}{topic}"
        return (f"{base}:next", f"{base}:serving", f"{base}:abandoned"), topic

    def ticket(self, tenant: str, session: str, number: int, serving: int) -> Ticket:
        keys, topic = self.place(tenant, session)
        return Ticket(keys, topic, number, serving)

    async def take(self, tenant: str, session: str) -> Ticket:
        keys, topic = self.place(tenant, session)
        number, serving = await self._take(keys=keys[:2], args=[self.ttl_ms])
        return Ticket(keys, topic, int(number), int(serving))

    @asynccontextmanager
    async def turn(self, tenant: str, session: str, wait_s: float) -> AsyncIterator[None]:
        """Hold the session's turn for the body of the ``async with``."""
        async with self.hold(await self.take(tenant, session), wait_s):
            yield

    @asynccontextmanager
    async def hold(self, ticket: Ticket, wait_s: float) -> AsyncIterator[None]:
        """Wait for ``ticket``'s turn, run the body, then let the next message go."""
        keys = list(ticket.keys)
        mine = False
        try:
            if ticket.serving < ticket.number:
                await self._wait(keys, ticket.topic, ticket.number, ticket.serving, wait_s)
            mine = True
            yield
        finally:
            how = "done" if mine else "abandon"
            if await self._done(keys=keys, args=[ticket.number, self.ttl_ms, how]):
                await signals.notify(self.bus, ticket.topic)

    async def _wait(
        self, keys: list[str], topic: str, ticket: int, serving: int, wait_s: float
    ) -> None:
        stuck = {"value": serving, "checks": 0}
        checks_per_turn = max(int(self.turn_timeout_s), 1)  # one re-check per second

        async def my_turn() -> bool | None:
            now = int(await self.redis.call("GET", keys[1]) or 0)
            if now >= ticket:
                return True
            if now != stuck["value"]:
                stuck["value"], stuck["checks"] = now, 0
            stuck["checks"] += 1
            if stuck["checks"] > checks_per_turn:  # the holder is gone: skip its turn
                await self._skip(keys=keys[1:], args=[now])
                stuck["checks"] = 0
                return None
            return None

        if await signals.wait_until(self.bus, topic, my_turn, wait_s) is None:
            raise ApiError(
                503,
                "an earlier message of this session is still being answered; try again",
                type="unavailable",
                headers={"Retry-After": "1"},
            )
