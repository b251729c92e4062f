"""What the memory service does, independent of the bus: store, recall, history, caps.

Handlers in :mod:`chatbus_memory.handlers` translate bus messages to these calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import ScoredTurn, SearchMemory
from chatbus_memory.embedder import Embedder
from chatbus_memory.fusion import FusionParams, Ranked, fuse, passes
from chatbus_memory.rerank import Reranker
from chatbus_memory.store import ChunkPoint, Cond, VectorStore, Where, point_id, where
from chatbus_memory.summarize import Summarizer
from chatbus_memory.text import Chunker, SparseEncoder, index_text

NOT_SUMMARY = (Cond("ne", "role", "summary"),)


@dataclass
class Incoming:
    """One turn to store."""

    tenant_id: str
    session_id: str
    turn_id: str
    turn: Turn
    user_id: str | None = None


@dataclass
class Caps:
    session_cap: int = 2000
    summary_batch: int = 100

    @property
    def check_every(self) -> int:
        """Stored turns of a session between two counts of it (see ``Engine.enforce_caps``)."""
        return max(1, self.session_cap // 20)


# sessions whose turns since their last count are remembered (least recently stored go first):
# ~8 MiB of heap at the bound (a hash of tenant and session -> a count, in a plain dict)
CAP_TRACKED_SESSIONS = 100_000


@dataclass
class Engine:
    store: VectorStore
    embedder: Embedder
    sparse: SparseEncoder
    chunker: Chunker
    summarizer: Summarizer
    caps: Caps = field(default_factory=Caps)
    fusion: FusionParams = field(default_factory=FusionParams)
    threshold: float = 0.3
    # the speaker's name in the text that is embedded / BM25-indexed
    speaker_in_dense: bool = False
    speaker_in_sparse: bool = True
    # the day the turn was said ("[8 May 2023] ...") in the embedded / BM25-indexed text
    date_in_dense: bool = False
    date_in_sparse: bool = False
    reranker: Reranker | None = None
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # turns stored per session since it was last counted, keyed by hash((tenant, session)): two
    # strings a session cost ~220 bytes, ~22 MiB at the bound; a colliding pair of sessions
    # only gets counted a little early
    _since_check: dict[int, int] = field(default_factory=dict)

    # -- storing -----------------------------------------------------------------------------

    async def store_turns(self, items: list[Incoming], *, enforce_caps: bool = True) -> int:
        """Chunk, embed (one batch) and upsert; then summarise sessions past their cap.

        Point ids derive from (tenant, session, turn id, chunk), so storing again overwrites.
        Returns the number of chunks stored.
        """
        if not items:
            return 0
        now = time.time()
        points: list[ChunkPoint] = []
        texts: list[str] = []
        for n, item in enumerate(items):
            turn = item.turn
            created = turn.created_at or now + n * 1e-6
            chunks = self.chunker.split(turn.content)
            for c, chunk in enumerate(chunks):
                payload: dict[str, Any] = {
                    "tenant_id": item.tenant_id,
                    "session_id": item.session_id,
                    "turn_id": item.turn_id,
                    "chunk": c,
                    "chunks": len(chunks),
                    "text": chunk,
                    "role": turn.role,
                    "created_at": created,
                }
                if c == 0 and len(chunks) > 1:  # a one-chunk turn's text is its content
                    payload["content"] = turn.content
                for key, value in (
                    ("user_id", item.user_id),
                    ("agent", turn.agent),
                    ("speaker", turn.speaker),
                ):
                    if value is not None:
                        payload[key] = value
                pid = point_id(item.tenant_id, item.session_id, item.turn_id, c)
                texts.append(self.dense_text(turn, chunk))
                sparse_text = index_text(
                    turn, chunk, with_speaker=self.speaker_in_sparse, with_date=self.date_in_sparse
                )
                points.append(ChunkPoint(pid, [], self.sparse.document(sparse_text), payload))
        vectors = await self.embedder.embed(texts)
        for p, v in zip(points, vectors.tolist(), strict=True):
            p.dense = v
        await self.store.upsert(points)
        if enforce_caps:
            await self.enforce_caps(items)
        return len(points)

    async def enforce_caps(self, items: list[Incoming]) -> None:
        """Summarise the sessions of ``items`` that are past their cap.

        Counting a session's turns costs ~0.1 ms, so it is not done for every stored turn:
        a session is counted once every ``Caps.check_every`` turns this process stores for it
        (1 for caps under 40; 5% of the cap above), so a session may pass its cap by that
        much before it is summarised. The counts due in a batch are made in one store call.
        """
        step = self.caps.check_every
        due: list[tuple[str, str]] = []
        pending = self._since_check
        for i in items:
            key = hash((i.tenant_id, i.session_id))
            n = pending.pop(key, 0) + 1
            if n >= step:
                due.append((i.tenant_id, i.session_id))
                n = 0
            pending[key] = n  # (re)inserted last: the dict is ordered by last store
        excess = len(pending) - CAP_TRACKED_SESSIONS
        if excess > 0:  # the least recently stored go
            for key in list(itertools.islice(pending, excess)):
                del pending[key]
        due = list(dict.fromkeys(due))
        if not due:
            return
        heads = [where(t, session_id=s, head=True, extra=NOT_SUMMARY) for t, s in due]
        counts = await self.store.count_each(heads)
        for (tenant_id, session_id), n in zip(due, counts, strict=True):
            if n > self.caps.session_cap:
                await self.enforce_cap(tenant_id, session_id)

    def tracked_sessions(self) -> int:
        """Sessions whose stored turns since their last count are remembered (bounded)."""
        return len(self._since_check)

    def locked_sessions(self) -> int:
        """Sessions with a lock held or awaited right now (their locks go when released)."""
        return len(self._locks)

    @asynccontextmanager
    async def session_lock(self, tenant_id: str, session_id: str) -> AsyncIterator[None]:
        key = (tenant_id, session_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    async def enforce_cap(self, tenant_id: str, session_id: str) -> int:
        """Summarise the oldest turns of a session past its cap, then drop them.

        Returns how many turns were summarised. The summary is stored before the turns are
        deleted, and its id derives from the turns it covers, so a crash in between leaves at
        worst a summary next to turns that the next store summarises again (same id).
        """
        async with self.session_lock(tenant_id, session_id):
            base = where(tenant_id, session_id=session_id, head=True, extra=NOT_SUMMARY)
            n = await self.store.count(base)
            if n <= self.caps.session_cap:
                return 0
            take = min(n, max(n - self.caps.session_cap, self.caps.summary_batch))
            heads = await self.store.scroll(base, limit=take, newest_first=False)
            turns = [_turn(p) for p in heads]
            text = await self.summarizer.summarize(turns)
            ids = [str(p["turn_id"]) for p in heads]
            digest = hashlib.sha256("\x00".join(ids).encode()).hexdigest()[:32]
            summary = Turn(role="summary", content=text, created_at=turns[-1].created_at)
            users = [p.get("user_id") for p in heads if p.get("user_id")]
            await self.store_turns(
                [
                    Incoming(
                        tenant_id,
                        session_id,
                        f"summary:{digest}",
                        summary,
                        str(users[-1]) if users else None,
                    )
                ],
                enforce_caps=False,
            )
            await self.store.delete(
                where(tenant_id, session_id=session_id, extra=(Cond("any", "turn_id", ids),))
            )
            return len(ids)

    # -- recall ------------------------------------------------------------------------------

    def scope_of(self, q: SearchMemory) -> Where:
        if q.scope == "user" and q.user_id is not None:
            return where(q.tenant_id, user_id=q.user_id)
        return where(q.tenant_id, session_id=q.session_id)

    async def search(self, q: SearchMemory) -> list[ScoredTurn]:
        dense = None
        if q.mode != "bm25":
            dense = (await self.embedder.embed([q.query]))[0].tolist()
        return await self.search_vector(q, dense)

    async def search_vector(self, q: SearchMemory, dense: list[float] | None) -> list[ScoredTurn]:
        """Search with an already embedded query (benchmarks time this part alone)."""
        sparse = self.sparse.query(q.query) if q.mode != "dense" else None
        depth = max(self.fusion.depth, q.k * 3)
        # the reranker learned from both scores: hybrid searches only
        reranker = self.reranker if dense is not None and sparse is not None else None
        if reranker is not None:
            depth = max(depth, reranker.depth)
        cands = await self.store.candidates(
            self.scope_of(q), dense, sparse, depth, idf_scoped=self.fusion.idf_scoped
        )
        ranked = fuse(cands, sparse.indices if sparse else [], self.fusion)
        if reranker is not None:
            ranked = reranker.rerank(ranked, q.query)
        threshold = self.threshold if q.threshold is None else q.threshold
        used = dense is not None
        kept = [r for r in ranked if passes(r, threshold, self.fusion, dense_used=used)]
        return group_by_turn(kept, q.k)

    # -- history and stats -------------------------------------------------------------------

    async def history(
        self, tenant_id: str, session_id: str, limit: int, before: float | None = None
    ) -> list[Turn]:
        if before is None:
            w = where(tenant_id, session_id=session_id, head=True)
            newest = await self.store.scroll(w, limit=limit, newest_first=True)
            return [_turn(p) for p in reversed(newest)]
        # qdrant-edge can let the boundary point through a ``lt`` range while it optimises a
        # segment, so ask for a few more and apply the bound here too.
        w = where(
            tenant_id, session_id=session_id, head=True, extra=(Cond("lt", "created_at", before),)
        )
        page = await self.store.scroll(w, limit=limit + 4, newest_first=True)
        older = [p for p in page if float(p.get("created_at", 0.0)) < before][:limit]
        return [_turn(p) for p in reversed(older)]

    async def counts(self, tenant_id: str, session_id: str | None = None) -> dict[str, int]:
        all_heads = await self.store.count(where(tenant_id, session_id=session_id, head=True))
        turns = await self.store.count(
            where(tenant_id, session_id=session_id, head=True, extra=NOT_SUMMARY)
        )
        points = await self.store.count(where(tenant_id, session_id=session_id))
        return {"points": points, "turns": turns, "summaries": all_heads - turns}

    def indexed_texts(self, payloads: list[dict[str, Any]]) -> list[str]:
        """The texts that were embedded for these points (to drop them from the cache)."""
        out = []
        for p in payloads:
            t = Turn(
                role="user",
                content=str(p.get("text", "")),
                speaker=p.get("speaker"),
                created_at=float(p.get("created_at", 0.0)),
            )
            out.append(self.dense_text(t, t.content))
        return out

    def dense_text(self, turn: Turn, chunk: str) -> str:
        return index_text(
            turn, chunk, with_speaker=self.speaker_in_dense, with_date=self.date_in_dense
        )


def _turn(p: dict[str, Any]) -> Turn:
    return Turn(
        role=p.get("role", "user"),
        content=str(p.get("content", p.get("text", ""))),
        created_at=float(p.get("created_at", 0.0)),
        agent=p.get("agent"),
        speaker=p.get("speaker"),
    )


def group_by_turn(ranked: list[Ranked], k: int) -> list[ScoredTurn]:
    """One hit per turn: its best chunk (the whole turn when it is one chunk) and score."""
    by_turn: dict[str, list[Ranked]] = {}
    for r in ranked:
        key = f"{r.payload.get('session_id')}\x00{r.payload.get('turn_id')}"
        if key not in by_turn and len(by_turn) >= k:
            continue
        by_turn.setdefault(key, []).append(r)
    hits = []
    for group in by_turn.values():
        best = group[0]
        p = best.payload
        if int(p.get("chunks", 1)) == 1:
            content = str(p.get("content", p.get("text", "")))
        else:
            content = str(p.get("text", ""))  # the best matching chunk of a long turn
        turn = Turn(
            role=p.get("role", "user"),
            content=content,
            created_at=float(p.get("created_at", 0.0)),
            agent=p.get("agent"),
            speaker=p.get("speaker"),
        )
        hits.append(
            ScoredTurn(
                turn=turn,
                score=round(best.score, 6),
                similarity=round(max(r.similarity for r in group), 6),
                session_id=str(p.get("session_id", "")),
                turn_id=str(p.get("turn_id", "")),
            )
        )
    return hits
