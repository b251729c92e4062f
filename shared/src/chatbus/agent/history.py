"""Short-term continuity: the recent turns of each session, in a Redis list."""

from __future__ import annotations

from pydantic import TypeAdapter

from chatbus.agent.keyspace import REDIS_PREFIX
from chatbus.contracts.chat import Turn
from chatbus.redis_link import Arg, RedisLink

_TURNS = TypeAdapter(list[Turn])


def parse_turns(raw: list[bytes]) -> list[Turn]:
    """Turns stored as JSON, parsed in one call (much cheaper than one parse per turn)."""
    if not raw:
        return []
    return _TURNS.validate_json(b"[" + b",".join(raw) + b"]")


def history_key(tenant_id: str, session_id: str) -> str:
    """The Redis key of a session's recent turns (the agent runtime's; forget events clear it)."""
    return f"{REDIS_PREFIX}{tenant_id}:history:{session_id}"


def user_sessions_key(tenant_id: str, user_id: str) -> str:
    """The sessions the runtime kept history of for a user (so forgetting the user finds them)."""
    return f"{REDIS_PREFIX}{tenant_id}:user-sessions:{user_id}"


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

    async def append(
        self, tenant_id: str, session_id: str, turns: list[Turn], user_id: str | None = None
    ) -> None:
        if not turns:
            return
        key = history_key(tenant_id, session_id)
        commands: list[tuple[Arg, ...]] = [
            ("RPUSH", key, *[t.to_bytes() for t in turns]),
            ("LTRIM", key, -self.keep, -1),
            ("EXPIRE", key, self.ttl_s),
        ]
        if user_id:
            users = user_sessions_key(tenant_id, user_id)
            commands += [("SADD", users, session_id), ("EXPIRE", users, self.ttl_s)]
        await self.redis.batch(commands)  # one round trip
