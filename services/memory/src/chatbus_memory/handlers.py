"""Bus handlers of the memory service: one per message, each a thin call into the engine.

Forgetting (a forget event, :mod:`chatbus.forget`) also clears what the service keeps outside
the vector store: the user's session set (its Redis keys, under ``redis_prefix``), the user's
profile and the cached embeddings of the texts. The agents' history is theirs to forget.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import nats.js.errors

from chatbus.bus import Bus
from chatbus.contracts.forget import ForgetRequested
from chatbus.contracts.memory import (
    IMPORTS_DURABLE,
    MEMORY_STREAM,
    GetHistory,
    GetStats,
    History,
    Imported,
    ImportTurns,
    MemoryStats,
    SearchMemory,
    SearchResult,
    TurnsImported,
    TurnsStored,
    TurnStored,
)
from chatbus.redis_link import RedisLink
from chatbus_memory.embedder import CachedEmbedder
from chatbus_memory.engine import Engine, Incoming
from chatbus_memory.profile import Profiles, demote_superseded
from chatbus_memory.store import where

log = logging.getLogger("chatbus.memory")


def user_sessions_key(prefix: str, tenant_id: str, user_id: str) -> str:
    """A Redis set of the sessions the memory service has seen for a user."""
    return f"{prefix}{tenant_id}:user-sessions:{user_id}"


def import_turn_id(index: int, role: str, content: str, created_at: float) -> str:
    digest = hashlib.sha256(f"{role}\x00{created_at}\x00{content}".encode()).hexdigest()[:24]
    return f"import:{index}:{digest}"


@dataclass
class Handlers:
    engine: Engine
    redis: RedisLink
    prefix: str  # the service's Redis keys (MemorySettings.redis_prefix)
    cache: CachedEmbedder | None = None
    profiles: Profiles | None = None
    search_seconds: Any = None  # a prometheus Histogram, when the service has a registry
    bus: Bus | None = None  # to tell the agent runtime of imports (TurnsImported)
    note_wait_s: float = 2.0  # an import waits this long at most for the agents to note it

    async def _note_users(self, items: list[Incoming]) -> None:
        pairs = {(i.tenant_id, i.user_id, i.session_id) for i in items if i.user_id}
        if not pairs:
            return
        await self.redis.batch(
            [("SADD", user_sessions_key(self.prefix, t, u), s) for t, u, s in pairs]
        )

    async def store_events(self, events: list[TurnsStored | TurnStored]) -> list[Incoming]:
        """Store a batch of turn events (from the JetStream consumers)."""
        items: list[Incoming] = []
        for e in events:
            if isinstance(e, TurnsStored):
                items += [
                    Incoming(e.tenant_id, e.session_id, e.turn_id(i), turn, e.user_id)
                    for i, turn in enumerate(e.turns)
                ]
            else:
                items.append(Incoming(e.tenant_id, e.session_id, e.event_id, e.turn, e.user_id))
        await self._note_users(items)
        await self.engine.store_turns(items)
        if self.profiles is not None:
            await self.profiles.observe(items)
        return items

    async def search(self, q: SearchMemory) -> SearchResult:
        started = time.perf_counter()
        hits = await self.engine.search(q)
        if self.profiles is not None and q.user_id is not None and len(hits) > 1:
            hits = demote_superseded(hits, await self.profiles.get(q.tenant_id, q.user_id))
        if self.search_seconds is not None:
            self.search_seconds.observe(time.perf_counter() - started)
        return SearchResult(hits=hits)

    async def history(self, q: GetHistory) -> History:
        turns = await self.engine.history(q.tenant_id, q.session_id, q.limit, q.before)
        return History(session_id=q.session_id, turns=turns)

    async def import_turns(self, q: ImportTurns) -> Imported:
        n = len(q.turns)
        base = time.time() - n * 1e-3
        items = []
        for i, t in enumerate(q.turns):
            turn_id = import_turn_id(i, t.role, t.content, t.created_at)
            turn = t if t.created_at else t.model_copy(update={"created_at": base + i * 1e-3})
            items.append(Incoming(q.tenant_id, q.session_id, turn_id, turn, q.user_id))
        await self._note_users(items)
        chunks = 0
        # embed in slices so one huge import neither blocks others long nor holds all vectors
        for start in range(0, n, 256):
            chunks += await self.engine.store_turns(items[start : start + 256], enforce_caps=False)
        await self.engine.enforce_cap(q.tenant_id, q.session_id)
        if self.profiles is not None:
            await self.profiles.observe(items)
        await self._announce_import(q, items)
        return Imported(session_id=q.session_id, imported=n, chunks=chunks)

    async def _announce_import(self, q: ImportTurns, items: list[Incoming]) -> None:
        """Tell the agent runtime (durably) that the session has a past only memory holds.

        Published before the import is answered: agents never search a session they know
        nothing of, so without this event an imported transcript would not be recalled.
        """
        if self.bus is None:
            return
        ids = "\x00".join((q.tenant_id, q.session_id, *(i.turn_id for i in items)))
        event_id = "imported:" + hashlib.sha256(ids.encode()).hexdigest()[:40]
        event = TurnsImported(
            event_id=event_id,
            tenant_id=q.tenant_id,
            session_id=q.session_id,
            user_id=q.user_id,
            turns=len(items),
        )
        await self.bus.js_publish(event, msg_id=event_id)
        await self._agents_caught_up()

    async def _agents_caught_up(self) -> None:
        """Until the agents' import consumer has nothing outstanding (at most ``note_wait_s``).

        So a chat sent right after the import is answered finds the session's past noted. Not
        waited for when no agent pulls from it (none runs, or none ever did): the event is
        durable and is noted when one comes.
        """
        assert self.bus is not None
        loop = asyncio.get_running_loop()
        until = loop.time() + self.note_wait_s
        while loop.time() < until:
            try:
                info = await self.bus.js.consumer_info(MEMORY_STREAM, IMPORTS_DURABLE)
            except nats.js.errors.NotFoundError:
                return
            if info.num_waiting == 0 or info.num_pending + info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.005)  # allowed: a short, bounded poll of the consumer's state

    async def forget_event(self, req: ForgetRequested) -> tuple[int, list[str]]:
        """A forget event: delete memory's state of the session or user; (points, sessions)."""
        t = req.tenant_id
        if req.session_id is not None:
            return await self._forget_session(t, req.session_id), [req.session_id]
        assert req.user_id is not None
        key = user_sessions_key(self.prefix, t, req.user_id)
        members = await self.redis.call("SMEMBERS", key)
        known = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
        mine = where(t, user_id=req.user_id)
        rows = await self.engine.store.payloads(mine, ["session_id"])
        sessions = sorted(known | {str(r["session_id"]) for r in rows if "session_id" in r})
        deleted = 0
        for session_id in sessions:
            deleted += await self._forget_session(t, session_id)
        # anything left under the user (another writer raced us) goes too
        deleted += await self.engine.store.delete(where(t, user_id=req.user_id))
        await self.redis.call("DEL", key)
        if self.profiles is not None:
            await self.profiles.forget(t, req.user_id)
        log.info("forgot user: %d sessions, %d points", len(sessions), deleted)
        return deleted, sessions

    async def _forget_session(self, tenant_id: str, session_id: str) -> int:
        w = where(tenant_id, session_id=session_id)
        async with self.engine.session_lock(tenant_id, session_id):
            if self.cache is not None:
                payloads = await self.engine.store.payloads(w, ["text", "speaker"])
                texts = self.engine.indexed_texts(payloads)
                if texts:
                    await self.cache.forget(texts)
            deleted = await self.engine.store.delete(w)
        return deleted

    async def stats(self, q: GetStats) -> MemoryStats:
        tenant = await self.engine.counts(q.tenant_id)
        out = MemoryStats(
            points=tenant["points"],
            turns=tenant["turns"],
            summaries=tenant["summaries"],
            store=self.engine.store.name,
            embedder=self.engine.embedder.model,
            dims=self.engine.embedder.dims,
        )
        if q.session_id is not None:
            s = await self.engine.counts(q.tenant_id, q.session_id)
            out.session_turns = s["turns"]
            out.session_summaries = s["summaries"]
        return out
