"""The agent runtime forgets a session or a user: only its own keys (``agent:``).

Handled once per event by one agent instance (all agent services share the durable consumer
``forget-agent``: they are one owner). A session's history, route, notes, drafts, records and
count of remembered turns go; for a user, every session the runtime saw them in (kept in
``user-sessions``), their notes, drafts, records and count. Safe to run twice: a second run
finds nothing left.
"""

from __future__ import annotations

import json
import re

from chatbus.agent.events import CustomerNotes
from chatbus.agent.handoff import route_key
from chatbus.agent.history import (
    history_key,
    remembered_key,
    user_remembered_key,
    user_sessions_key,
)
from chatbus.agent.keyspace import REDIS_PREFIX
from chatbus.agent.records import RecordStore
from chatbus.contracts.forget import ForgetRequested
from chatbus.redis_link import RedisLink


class AgentForgetter:
    def __init__(self, redis: RedisLink) -> None:
        self.redis = redis

    async def forget(self, req: ForgetRequested) -> tuple[int, list[str]]:
        """Delete the runtime's state about the session or user; (keys deleted, sessions)."""
        t = req.tenant_id
        owners: list[str] = []  # "session:<id>" / "user:<id>" as drafts and indexes name them
        keys: list[str] = []
        if req.user_id is not None:
            raw = await self.redis.call("SMEMBERS", user_sessions_key(t, req.user_id))
            sessions = sorted(m.decode() for m in raw)
            owners.append(f"user:{req.user_id}")
            keys += [user_sessions_key(t, req.user_id), CustomerNotes.key(t, req.user_id, None)]
            keys.append(user_remembered_key(t, req.user_id))
        else:
            assert req.session_id is not None
            sessions = [req.session_id]
        for s in sessions:
            owners.append(f"session:{s}")
            keys += [history_key(t, s), route_key(t, s), CustomerNotes.key(t, None, s)]
            keys.append(remembered_key(t, s))
        deleted = 0
        for owner in owners:
            deleted += await self._records(t, owner)
            drafts = f"{REDIS_PREFIX}{t}:draft:{owner}:"
            async for key in self.redis.scan(f"{literal(drafts)}*"):
                if b":" not in key[len(drafts.encode()) :]:  # not session "<id>:<more>"'s
                    keys.append(key.decode())
        for i in range(0, len(keys), 500):
            deleted += int(await self.redis.call("DEL", *keys[i : i + 500]))
        return deleted, sessions

    async def _records(self, tenant_id: str, owner: str) -> int:
        """Delete the records indexed under ``owner`` ("session:<id>" or "user:<id>")."""
        deleted = 0
        base = RecordStore.index(tenant_id, "")  # agent:{t}:records:
        async for index in self.redis.scan(f"{literal(base)}*:{literal(owner)}"):
            name = index.decode()
            kind = name[len(base) :].split(":", 1)[0]
            if name != f"{base}{kind}:{owner}":  # another owner's id ending in ":<owner>"
                continue
            ids = [i.decode() for i in await self.redis.call("ZRANGE", name, 0, -1)]
            keys = [RecordStore.key(tenant_id, kind, i) for i in ids]
            found = await self.redis.call("MGET", *keys) if keys else []
            block: list[tuple[str | int | float | bytes, ...]] = [("DEL", name)]
            for record_id, raw in zip(ids, found, strict=True):
                record = json.loads(raw) if raw else {}
                block.append(("ZREM", RecordStore.index(tenant_id, kind), record_id))
                for by in ("session", "user"):
                    if record.get(f"{by}_id"):
                        other = RecordStore.index(tenant_id, kind, by, record[f"{by}_id"])
                        block.append(("ZREM", other, record_id))
            if keys:
                block.append(("DEL", *keys))
            replies = await self.redis.transaction(block)
            deleted += int(replies[-1]) if keys else 0
        return deleted


def literal(text: str) -> str:
    """``text`` as a SCAN pattern that matches only itself: ids may hold ``*``, ``?``, ``[``."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)
