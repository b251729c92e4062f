"""The Redis ledger: budget counters, reservations and usage aggregates, changed atomically.

Keys (``P`` = prefix):

- ``P spend:<period>:<subject>`` hash ``usd``/``tok`` spent, ``rusd``/``rtok`` reserved; the
  reservations themselves in the zset ``...:r`` (member ``rid|nusd|tok``, score = expiry ms).
- ``P res:<rid>`` the reservation: which counters hold it and its member string.
- ``P agg:<tenant>:<YYYY-MM-DD>`` hash ``<metric>\\x1f<agent>\\x1f<model>\\x1f<user>`` and
  ``P aggs:<tenant>:<day>`` hash ``<metric>\\x1f<session>``; metrics ``p`` prompt tokens, ``c``
  completion tokens, ``n`` nano-dollars, ``r`` requests, ``h`` cache hits.
- ``P seen:<event_id>``: an event already counted (dedup across redeliveries).

``reserve`` checks every applicable limit and reserves in one script, so concurrent requests
cannot all pass the same check. ``record`` settles the reservation, adds the spend and the
aggregates and marks the event seen in one script, so an event is counted exactly once even if
the service dies between counting and acking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatbus.contracts.cost import UsageRecorded
from chatbus.redis_link import RedisLink

SEP = "\x1f"
METRICS = ("p", "c", "n", "r", "h")
SPEND_TTL_S = 40 * 86400

_PURGE = """
local function purge(k, z, now)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, m in ipairs(old) do
    local _, _, u, t = string.find(m, '|(%d+)|(%d+)$')
    if u ~= '0' then redis.call('HINCRBY', k, 'rusd', '-' .. u) end
    if t ~= '0' then redis.call('HINCRBY', k, 'rtok', '-' .. t) end
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
end
"""

# KEYS: n counters, n zsets, reservation key.  ARGV: now_ms, expiry_ms, rid, res_ttl_s,
# keys_json, main nusd, main tok, cheap nusd, cheap tok (-1 = no cheap model),
# then per counter: unit ('usd'|'tok'), soft (0 = none), hard.
RESERVE = (
    _PURGE
    + """
local n = (#KEYS - 1) / 2
local now = tonumber(ARGV[1])
for i = 1, n do purge(KEYS[i], KEYS[n + i], now) end
local function used(i)
  local unit = ARGV[9 + 3 * (i - 1) + 1]
  local a = redis.call('HGET', KEYS[i], unit) or '0'
  local b = redis.call('HGET', KEYS[i], 'r' .. unit) or '0'
  return unit, tonumber(a) + tonumber(b)
end
local function check(eu, et)
  local soft_hit, hard_hit = 0, 0
  for i = 1, n do
    local unit, spent = used(i)
    local soft = tonumber(ARGV[9 + 3 * (i - 1) + 2])
    local hard = tonumber(ARGV[9 + 3 * (i - 1) + 3])
    local est = et
    if unit == 'usd' then est = eu end
    if hard_hit == 0 and spent + est > hard then hard_hit = i end
    if soft_hit == 0 and soft > 0 and spent + est > soft then soft_hit = i end
  end
  return soft_hit, hard_hit
end
local function reserve(eu, et)
  local member = ARGV[3] .. '|' .. eu .. '|' .. et
  for i = 1, n do
    redis.call('HINCRBY', KEYS[i], 'rusd', eu)
    redis.call('HINCRBY', KEYS[i], 'rtok', et)
    redis.call('ZADD', KEYS[n + i], ARGV[2], member)
    redis.call('EXPIRE', KEYS[i], 3456000)
    redis.call('EXPIRE', KEYS[n + i], 3456000)
  end
  redis.call('HSET', KEYS[2 * n + 1], 'keys', ARGV[5], 'member', member)
  redis.call('EXPIRE', KEYS[2 * n + 1], ARGV[4])
end
local function spent_of(i)
  if i == 0 then return '0' end
  local _, s = used(i)
  return tostring(s)
end
local s, h = check(ARGV[6], ARGV[7])
if s == 0 and h == 0 then
  reserve(ARGV[6], ARGV[7])
  return {'allow', 0, '0'}
end
if ARGV[8] ~= '-1' then
  local s2, h2 = check(ARGV[8], ARGV[9])
  if h2 == 0 then
    reserve(ARGV[8], ARGV[9])
    local which = s
    if which == 0 then which = h end
    return {'downgrade', which, spent_of(which)}
  end
  h = h2
end
if h == 0 then
  reserve(ARGV[6], ARGV[7])
  return {'allow', s, spent_of(s)}
end
return {'deny', h, spent_of(h)}
"""
)

# KEYS: seen, res, agg, aggs, tenants, m spend counters, r reserved counters, r zsets.
# ARGV: seen_ttl_s, m, r, nusd, tokens, p, c, cached, agg suffix, session, tenant, spend_ttl_s
RECORD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local m, r = tonumber(ARGV[2]), tonumber(ARGV[3])
local member = redis.call('HGET', KEYS[2], 'member')
if member then
  local _, _, u, t = string.find(member, '|(%d+)|(%d+)$')
  for i = 1, r do
    local k, z = KEYS[5 + m + i], KEYS[5 + m + r + i]
    if redis.call('ZREM', z, member) == 1 then
      if u ~= '0' then redis.call('HINCRBY', k, 'rusd', '-' .. u) end
      if t ~= '0' then redis.call('HINCRBY', k, 'rtok', '-' .. t) end
    end
  end
  redis.call('DEL', KEYS[2])
end
for i = 1, m do
  redis.call('HINCRBY', KEYS[5 + i], 'usd', ARGV[4])
  redis.call('HINCRBY', KEYS[5 + i], 'tok', ARGV[5])
  redis.call('EXPIRE', KEYS[5 + i], ARGV[12])
end
local sep = '\\031'
local values = {p = ARGV[6], c = ARGV[7], n = ARGV[4], r = '1', h = ARGV[8]}
for metric, v in pairs(values) do
  if v ~= '0' then
    redis.call('HINCRBY', KEYS[3], metric .. sep .. ARGV[9], v)
    redis.call('HINCRBY', KEYS[4], metric .. sep .. ARGV[10], v)
  end
end
redis.call('SADD', KEYS[5], ARGV[11])
return 1
"""


@dataclass
class Limit:
    """One budget rule applied to one counter, in ledger units."""

    counter: str  # e.g. "d20261127:user:default:u1"
    unit: str  # "usd" (nano-dollars) or "tok"
    soft: int
    hard: int


@dataclass
class Usage:
    """One event to count: its cost in nano-dollars and the spend counters it adds to."""

    event: UsageRecorded
    nusd: int
    counters: list[str]


@dataclass
class Reserved:
    decision: str  # allow | downgrade | deny
    limit_index: int  # 1-based index of the limit that decided; 0 = none
    used: int  # spent + reserved on that limit before this request


def clean(value: str) -> str:
    return value.replace(SEP, " ")


class Ledger:
    """Atomic budget and usage bookkeeping in Redis (see the module docstring)."""

    def __init__(self, redis: RedisLink, prefix: str = "cost:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._reserve = redis.script(RESERVE)
        self._record = redis.script(RECORD)

    def spend_key(self, counter: str) -> str:
        return f"{self.prefix}spend:{counter}"

    def agg_key(self, tenant: str, day: str, *, sessions: bool = False) -> str:
        return f"{self.prefix}{'aggs' if sessions else 'agg'}:{tenant}:{day}"

    @property
    def tenants_key(self) -> str:
        return f"{self.prefix}tenants"

    async def reserve(
        self,
        rid: str,
        limits: list[Limit],
        *,
        main: tuple[int, int],
        cheap: tuple[int, int] | None,
        now_ms: int,
        ttl_ms: int,
    ) -> Reserved:
        """Reserve ``main`` (nano-dollars, tokens) or, past a limit, ``cheap``; or deny."""
        if not limits:
            return Reserved("allow", 0, 0)
        counters = [self.spend_key(lim.counter) for lim in limits]
        keys = [*counters, *(c + ":r" for c in counters), f"{self.prefix}res:{rid}"]
        args: list[Any] = [
            now_ms,
            now_ms + ttl_ms,
            rid,
            ttl_ms // 1000 + 3600,
            json.dumps(counters),
            main[0],
            main[1],
            *(cheap if cheap is not None else (-1, -1)),
        ]
        for lim in limits:
            args += [lim.unit, lim.soft, lim.hard]
        decision, index, used = await self._reserve(keys=keys, args=args)
        return Reserved(_text(decision), int(index), int(float(_text(used))))

    async def record(
        self, event: UsageRecorded, *, nusd: int, counters: list[str], seen_ttl_s: int
    ) -> bool:
        """Count ``event`` once: settle its reservation, add spend and aggregates.

        Returns False when the event was counted before (a redelivery or a duplicate).
        """
        return (await self.record_many([Usage(event, nusd, counters)], seen_ttl_s=seen_ttl_s))[0]

    async def record_many(self, items: list[Usage], *, seen_ttl_s: int) -> list[bool]:
        """:meth:`record` for a batch, in two round trips; each event is still atomic."""
        held: list[list[str]] = [[] for _ in items]
        settling = [i for i, u in enumerate(items) if u.event.reservation_id]
        if settling:
            found = await self.redis.batch(
                [
                    ("HGET", f"{self.prefix}res:{items[i].event.reservation_id}", "keys")
                    for i in settling
                ]
            )
            for i, raw in zip(settling, found, strict=True):
                if raw:
                    held[i] = json.loads(raw)
        calls = [self._record_call(u, h, seen_ttl_s) for u, h in zip(items, held, strict=True)]
        return [bool(r) for r in await self._record.many(calls)]

    def _record_call(
        self, u: Usage, held: list[str], seen_ttl_s: int
    ) -> tuple[list[str], list[Any]]:
        event = u.event
        day = _day(event.ts)
        tenant = clean(event.tenant_id)
        prompt, completion = (
            (0, 0) if event.cached else (event.prompt_tokens, event.completion_tokens)
        )
        keys = [
            f"{self.prefix}seen:{event.event_id}",
            f"{self.prefix}res:{event.reservation_id or '-'}",
            self.agg_key(tenant, day),
            self.agg_key(tenant, day, sessions=True),
            self.tenants_key,
            *(self.spend_key(c) for c in u.counters),
            *held,
            *(h + ":r" for h in held),
        ]
        suffix = SEP.join(clean(x) for x in (event.agent, event.model, event.user_id or "-"))
        args: list[Any] = [
            seen_ttl_s,
            len(u.counters),
            len(held),
            u.nusd,
            prompt + completion,
            prompt,
            completion,
            1 if event.cached else 0,
            suffix,
            clean(event.session_id or "-"),
            tenant,
            SPEND_TTL_S,
        ]
        return keys, args

    async def spent(self, counter: str) -> tuple[int, int]:
        """(nano-dollars, tokens) spent on a counter (settled only)."""
        usd, tok = await self.redis.call("HMGET", self.spend_key(counter), "usd", "tok")
        return int(usd or 0), int(tok or 0)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
