"""Rate limits per API key, user, session and IP, and tokens per minute per key.

Each limit is a sliding one-minute window kept in a Redis sorted set; one Lua script checks
every limit of a request and counts it in all of them, or in none, atomically, so the limits
hold exactly however many gateway replicas share the Redis. A refused request is not counted.
"""

from __future__ import annotations

import itertools
import math
import secrets
from dataclasses import dataclass

from chatbus.redis_link import RedisLink

WINDOW_MS = 60_000

# KEYS: one sorted set per limit (the last is the token log when ARGV[2] == "1").
# ARGV: window_ms, has_tokens, member, limit for each request limit, token limit.
# Returns {allowed, index of the binding limit, its limit, remaining, reset_ms}.
ADMIT = """
local t = redis.call('TIME')  -- one clock for every replica
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local has_tokens, member = ARGV[2] == '1', ARGV[3]
local n = #KEYS
if has_tokens then n = n - 1 end
local best, best_limit, best_left, best_reset = 0, 0, -1, 0
for i = 1, n do
  local key, limit = KEYS[i], tonumber(ARGV[3 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local reset = window
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
  if count >= limit then return {0, i, limit, 0, reset} end
  local left = limit - count - 1
  if best_left < 0 or left < best_left then
    best, best_limit, best_left, best_reset = i, limit, left, reset
  end
end
if has_tokens then
  local key, limit = KEYS[#KEYS], tonumber(ARGV[4 + n])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local used = 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    used = used + tonumber(string.match(m, ':(%d+)$') or '0')
  end
  if used >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {0, #KEYS, limit, 0, tonumber(oldest[2]) + window - now}
  end
end
for i = 1, n do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], window)
end
return {1, best, best_limit, best_left, best_reset}
"""

SPEND = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


@dataclass(frozen=True)
class Limit:
    name: str  # "ip", "key", "user", "session", "tokens": the metric label
    key: str
    per_minute: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    name: str = ""

    def headers(self) -> dict[str, str]:
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.remaining, 0)),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(self.reset_s, 1))
        return out


UNLIMITED = Decision(True, 0, 0, 0)


class RateLimiter:
    def __init__(self, redis: RedisLink, prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{prefix}rl:"
        self._admit = redis.script(ADMIT)
        # Each counted request's own member in the windows: unique across replicas.
        name = secrets.token_hex(6)
        self._ids = (f"{name}.{n:x}" for n in itertools.count())
        self._spend = redis.script(SPEND)

    def limit(self, name: str, ident: str, per_minute: int) -> Limit:
        return Limit(name, f"{self.prefix}{name}:{ident}", per_minute)

    async def admit(self, limits: list[Limit], tokens: Limit | None = None) -> Decision:
        """Count one request against every limit, or refuse it (counting nothing)."""
        active = [lim for lim in limits if lim.per_minute > 0]
        if tokens is not None and tokens.per_minute <= 0:
            tokens = None
        if not active and tokens is None:
            return UNLIMITED
        keys = [lim.key for lim in active]
        args: list[str | int] = [WINDOW_MS, "1" if tokens else "0", next(self._ids)]
        args += [lim.per_minute for lim in active]
        if tokens is not None:
            keys.append(tokens.key)
            args.append(tokens.per_minute)
        allowed, index, limit, left, reset_ms = await self._admit(keys=keys, args=args)
        named = [*active, tokens] if tokens else active
        return Decision(
            bool(allowed),
            int(limit),
            int(left),
            min(max(math.ceil(int(reset_ms) / 1000), 0), WINDOW_MS // 1000),
            named[int(index) - 1].name if int(index) >= 1 else "",
        )

    async def spend_tokens(self, tokens: Limit, count: int) -> None:
        """Log ``count`` tokens used by one answer against the per-minute token limit.

        Each entry gets its own server-made id: two answers never collapse into one entry,
        whatever ids the caller sent.
        """
        if tokens.per_minute <= 0 or count <= 0:
            return
        await self._spend(keys=[tokens.key], args=[f"{next(self._ids)}:{count}", WINDOW_MS])
