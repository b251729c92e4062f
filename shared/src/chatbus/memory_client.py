"""The memory service seen from an agent or the gateway: :class:`BusMemory`.

It implements the agent's ``Memory`` port (``recall`` / ``remember``) over the bus, plus the
calls the gateway makes (history, search, import). Forgetting is the forget event
(:mod:`chatbus.forget`), not a call to memory. Recall never breaks a chat: it gets
a small share of the message's deadline (at most ``recall_budget_s``); when the memory service
is down or slower than that it logs a warning and raises :class:`RecallSkipped`, and the chat
is answered without long-term memory (the reply says ``degraded: "memory"``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import nats.js.errors
from nats.js import api

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest, Turn
from chatbus.contracts.memory import (
    MEMORY_STREAM,
    GetHistory,
    GetProfile,
    GetStats,
    History,
    Imported,
    ImportTurns,
    MemoryStats,
    Scope,
    SearchMemory,
    SearchMode,
    SearchResult,
    TurnsImported,
    TurnsStored,
    TurnsStoredBatch,
    TurnStored,
    UpdateProfile,
    UserProfile,
)
from chatbus.deadline import budget
from chatbus.errors import (
    BusUnavailable,
    NoResponders,
    RecallSkipped,
    RemoteError,
    RequestTimeout,
)
from chatbus.group_publish import GroupPublisher
from chatbus.jetstream import ensure_stream
from chatbus.streams import stream_exists

log = logging.getLogger("chatbus.memory")

# A turn's publish stops retrying this long before the request's deadline, so the reply
# still reaches its caller.
WRITE_MARGIN_S = 1.0


async def ensure_memory_stream(bus: Bus, *, max_age_s: float = 7 * 86400) -> None:
    """Create the ``MEMORY`` stream (work-queue: an event is removed once its consumer acked).

    It holds turn events (the memory service consumes them) and import events (the agent
    runtime does). The memory service creates it at start; a publisher creates it too when it
    publishes first.
    """
    await ensure_stream(
        bus,
        MEMORY_STREAM,
        [TurnStored.subject, TurnsStored.subject, TurnsStoredBatch.subject, TurnsImported.subject],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        max_age=max_age_s,
        duplicate_window=120.0,
    )


def exchange_event_id(req: ChatRequest) -> str:
    """The idempotency key (``Nats-Msg-Id``) of the turns remembered for ``req``.

    JetStream de-duplicates by this id across the whole stream, so it is scoped by tenant and
    session: a retry of the same request stores nothing twice, while another tenant (or
    session) reusing the same request id can never make these turns vanish.
    """
    seed = "\0".join((req.tenant_id, req.session_id, req.request_id))
    return hashlib.sha256(seed.encode()).hexdigest()[:40]


def turn_event_id(req: ChatRequest, index: int) -> str:
    """The id memory stores the ``index``-th (non-blank) turn remembered for ``req`` under."""
    return f"{exchange_event_id(req)}:{index}"


class BusMemory:
    """Long-term memory over the bus (the ``Memory`` port of the agent runtime)."""

    def __init__(
        self,
        bus: Bus,
        *,
        threshold: float = 0.3,
        timeout: float = 2.0,
        recall_budget_s: float = 1.0,
        recall_share: float = 0.05,
    ) -> None:
        self.bus = bus
        self.threshold = threshold
        self.timeout = timeout
        # Recall may take this share of what is left of the message's deadline, at most
        # recall_budget_s: a hung memory service costs each chat that much, not seconds.
        self.recall_budget_s = recall_budget_s
        self.recall_share = recall_share
        self._stream_seen = False
        self._batches_seen = False
        # Sizes are counted in characters: 128k keeps a batch (UTF-8, JSON) under NATS's
        # default 1 MB payload limit.
        self._writes: GroupPublisher[TurnsStored] = GroupPublisher(self._write, max_bytes=128_000)

    # -- the agent's port -------------------------------------------------------------------

    async def recall(self, req: ChatRequest, *, k: int, scope: str) -> list[Turn]:
        """Earlier turns relevant to ``req.message`` (best first).

        Raises :class:`RecallSkipped` when memory is down or does not answer within its budget.

        ``scope`` is ``"session"`` or ``"user"`` (all sessions of ``req.user_id`` in the
        tenant; the session alone when the request has no user).
        """
        use_user = scope == "user" and req.user_id is not None
        wait = self.timeout
        if req.deadline is not None:
            wait = budget(req.deadline, self.recall_budget_s, self.recall_share)
        try:
            result = await self.search(
                req.tenant_id,
                query=req.message,
                session_id=req.session_id,
                user_id=req.user_id,
                scope="user" if use_user else "session",
                k=k,
                threshold=self.threshold,
                timeout=wait,
                deadline=req.deadline,
            )
        except (NoResponders, RequestTimeout, BusUnavailable) as e:
            log.warning("memory recall skipped: %s: %s", type(e).__name__, e)
            raise RecallSkipped(type(e).__name__) from e
        except RemoteError as e:
            log.warning("memory recall failed: %s", e)
            raise RecallSkipped(e.code) from e
        return [hit.turn for hit in result.hits]

    async def profile(self, req: ChatRequest) -> dict[str, str]:
        """The current facts of the requester's profile; ``{}`` without a user.

        Raises :class:`RecallSkipped` when memory is down or does not answer within its budget.
        """
        if req.user_id is None:
            return {}
        wait = self.timeout
        if req.deadline is not None:
            wait = budget(req.deadline, self.recall_budget_s, self.recall_share)
        try:
            found = await self.get_profile(
                req.tenant_id, req.user_id, timeout=wait, deadline=req.deadline
            )
            return found.values()
        except (NoResponders, RequestTimeout, BusUnavailable, RemoteError) as e:
            log.warning("profile skipped: %s: %s", type(e).__name__, e)
            raise RecallSkipped(type(e).__name__) from e

    async def remember(self, req: ChatRequest, turns: list[Turn]) -> None:
        """Publish the turns (one event) to the memory stream; retries store nothing twice.

        Events of concurrent messages share one JetStream write (:mod:`chatbus.group_publish`);
        this returns once this one is on the stream.
        """
        kept = [t for t in turns if t.content.strip()]
        if not kept:
            return
        event = TurnsStored(
            event_id=exchange_event_id(req),
            tenant_id=req.tenant_id,
            session_id=req.session_id,
            user_id=req.user_id,
            turns=kept,
        )
        size = sum(len(t.content) for t in kept) + 300
        # A stream electing a leader (a NATS node died) is asked again within the request's
        # deadline, once this process has seen the stream exist.
        deadline = req.deadline - WRITE_MARGIN_S if req.deadline else None
        await self._writes.publish(event, size=size, deadline=deadline)

    async def _write(self, events: list[TurnsStored], deadline: float | None) -> None:
        if len(events) > 1:
            batch = TurnsStoredBatch(events=events)
            seed = "\0".join(e.event_id for e in events)
            batch_id = "b:" + hashlib.sha256(seed.encode()).hexdigest()[:40]
            # Retried within the deadline (a stream electing a leader) once batches got through:
            # until then, no responders may mean a stream without the batch subject.
            seen = deadline if self._batches_seen else None
            try:
                await self.bus.js_publish(
                    batch, msg_id=batch_id, timeout=self.timeout, deadline=seen
                )
                self._batches_seen = True
                return
            except nats.js.errors.NoStreamResponseError:
                # a stream made by an older memory service: no batch subject; one by one
                await asyncio.gather(*(self._write([e], deadline) for e in events))
                return
        event = events[0]
        seen = deadline if self._stream_seen else None
        try:
            await self.bus.js_publish(
                event, msg_id=event.event_id, timeout=self.timeout, deadline=seen
            )
        except nats.js.errors.NoStreamResponseError:
            if self._stream_seen:
                raise
            if not await stream_exists(self.bus, MEMORY_STREAM):
                # nobody created the stream yet (memory service never started): do it, retry
                await ensure_memory_stream(self.bus)
            await self.bus.js_publish(
                event, msg_id=event.event_id, timeout=self.timeout, deadline=deadline
            )
        self._stream_seen = True

    # -- what the gateway uses --------------------------------------------------------------

    async def search(
        self,
        tenant_id: str,
        *,
        query: str,
        session_id: str | None = None,
        user_id: str | None = None,
        scope: Scope = "session",
        k: int = 5,
        threshold: float | None = None,
        mode: SearchMode = "hybrid",
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> SearchResult:
        """Scored earlier turns; raises the bus errors (``NoResponders``, ...) to the caller."""
        msg = SearchMemory(
            tenant_id=tenant_id,
            session_id=session_id,
            user_id=user_id,
            scope=scope,
            query=query,
            k=k,
            threshold=threshold,
            mode=mode,
        )
        wait = self.timeout if timeout is None else timeout
        return await self.bus.request(msg, SearchResult, timeout=wait, deadline=deadline)

    async def history(
        self, tenant_id: str, session_id: str, limit: int = 50, before: float | None = None
    ) -> list[Turn]:
        """The last ``limit`` stored turns of a session, oldest first."""
        msg = GetHistory(tenant_id=tenant_id, session_id=session_id, limit=limit, before=before)
        reply = await self.bus.request(msg, History, timeout=self.timeout)
        return reply.turns

    async def import_turns(
        self,
        tenant_id: str,
        session_id: str,
        turns: list[Turn],
        *,
        user_id: str | None = None,
        timeout: float = 120.0,
    ) -> Imported:
        """Store a past transcript now (embedding is done when this returns)."""
        msg = ImportTurns(tenant_id=tenant_id, session_id=session_id, user_id=user_id, turns=turns)
        return await self.bus.request(msg, Imported, timeout=timeout)

    async def get_profile(
        self,
        tenant_id: str,
        user_id: str,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> UserProfile:
        msg = GetProfile(tenant_id=tenant_id, user_id=user_id)
        wait = self.timeout if timeout is None else timeout
        return await self.bus.request(msg, UserProfile, timeout=wait, deadline=deadline)

    async def update_profile(
        self, tenant_id: str, user_id: str, facts: dict[str, str | None]
    ) -> UserProfile:
        """Merge ``facts`` into the profile (``None`` removes one); returns the new profile."""
        msg = UpdateProfile(tenant_id=tenant_id, user_id=user_id, facts=facts)
        return await self.bus.request(msg, UserProfile, timeout=max(self.timeout, 5.0))

    async def stats(self, tenant_id: str = "default", session_id: str | None = None) -> MemoryStats:
        msg = GetStats(tenant_id=tenant_id, session_id=session_id)
        return await self.bus.request(msg, MemoryStats, timeout=self.timeout)
