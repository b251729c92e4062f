"""Short-term continuity: the recent turns of each session, in a Redis list."""

from __future__ import annotations

from pydantic import TypeAdapter

from chatbus.contracts.chat import Turn
from chatbus.redis_link import RedisLink

_TURNS = TypeAdapter(list[Turn])


def parse_turns(raw: list[bytes]) -> list[Turn]:
    """Turns stored as JSON, parsed in one call (much cheaper than one parse per turn)."""
    if not raw:
        return []
    return _TURNS.validate_json(b"[" + b",".join(raw) + b"]")


def history_key(tenant_id: str, session_id: str) -> str:
    """The Redis key of a session's recent turns (the memory service deletes it on forget)."""
    return f"chatbus:{tenant_id}:history:{session_id}"


class RedisHistory:
    """Keeps the last ``keep`` turns of each session; sessions expire after ``ttl_s`` idle."""

    def __init__(self, redis: RedisLink, *, keep: int = 50, ttl_s: int = 7 * 86400) -> None:
        self.redis = redis
        self.keep = keep
        self.ttl_s = ttl_s

    async def recent(self, tenant_id: str, session_id: str, n: int) -> list[Turn]:
        if n <= 0:
            return []
        raw = await self.redis.call("LRANGE", history_key(tenant_id, session_id), -n, -1)
        return parse_turns(raw)

    async def append(self, tenant_id: str, session_id: str, turns: list[Turn]) -> None:
        if not turns:
            return
        key = history_key(tenant_id, session_id)
        await self.redis.batch(  # one round trip
            [
                ("RPUSH", key, *[t.to_bytes() for t in turns]),
                ("LTRIM", key, -self.keep, -1),
                ("EXPIRE", key, self.ttl_s),
            ]
        )
