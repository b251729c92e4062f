"""Short-term continuity: the recent turns of each session, in a Redis list; and how many turns
long-term memory holds of each session and user, so the runtime knows when to search it.

Memory is searched only when it can hold something the prompt lacks: turns older than the
recent history. The runtime counts the turns it gave memory (``remembered`` keys, kept
``remembered_ttl_s`` after the last message, much longer than the history) and the turns
imported into memory (the memory service's :class:`~chatbus.contracts.memory.TurnsImported`
event, :mod:`chatbus.agent.memory_imports`). A new session has neither, so its first message
never searches; one whose history expired, or with an imported past, does.
"""

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


def remembered_key(tenant_id: str, session_id: str) -> str:
    """How many turns of a session long-term memory holds, as far as the runtime knows."""
    return f"{REDIS_PREFIX}{tenant_id}:remembered:{session_id}"


def user_remembered_key(tenant_id: str, user_id: str) -> str:
    """How many turns of a user (all sessions) long-term memory holds, as far as known."""
    return f"{REDIS_PREFIX}{tenant_id}:remembered-user:{user_id}"


class RedisHistory:
    """Keeps the last ``keep`` turns of each session; sessions expire after ``ttl_s`` idle.

    With ``remembered_ttl_s`` (long-term memory is on) it also counts the turns memory holds
    of each session and user (:func:`remembered_key`), kept that long after the last turn.
    """

    def __init__(
        self,
        redis: RedisLink,
        *,
        keep: int = 50,
        ttl_s: int = 7 * 86400,
        remembered_ttl_s: int | None = None,
    ) -> None:
        self.redis = redis
        self.keep = keep
        self.ttl_s = ttl_s
        self.remembered_ttl_s = remembered_ttl_s

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
        remembered = sum(1 for t in turns if t.content.strip())  # what memory is given
        commands += self._counted(tenant_id, session_id, user_id, remembered)
        await self.redis.batch(commands)  # one round trip

    async def note_imported(
        self, tenant_id: str, session_id: str, user_id: str | None, turns: int
    ) -> None:
        """Memory holds ``turns`` more turns of the session (an import): recall searches it."""
        await self.redis.batch(self._counted(tenant_id, session_id, user_id, turns))

    def _counted(
        self, tenant_id: str, session_id: str, user_id: str | None, n: int
    ) -> list[tuple[Arg, ...]]:
        """Commands adding ``n`` turns to the remembered counts (and the user's session set)."""
        ttl = self.remembered_ttl_s
        commands: list[tuple[Arg, ...]] = []
        if ttl and n > 0:
            key = remembered_key(tenant_id, session_id)
            commands += [("INCRBY", key, n), ("EXPIRE", key, ttl)]
            if user_id:
                key = user_remembered_key(tenant_id, user_id)
                commands += [("INCRBY", key, n), ("EXPIRE", key, ttl)]
        if user_id:  # forgetting the user finds every key of theirs through this set
            users = user_sessions_key(tenant_id, user_id)
            commands += [("SADD", users, session_id), ("EXPIRE", users, max(ttl or 0, self.ttl_s))]
        return commands
