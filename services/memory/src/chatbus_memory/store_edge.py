"""The embedded vector store: Qdrant's engine in-process (qdrant-edge), one shard on disk.

Its calls are synchronous and run in worker threads. Segment optimisation (HNSW, vacuum) runs
in the background after writes. Only one process may open a shard (its WAL is locked): run one
memory service per data directory, or use a Qdrant server (``QDRANT_URL``) to scale out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from chatbus_memory.edge_layout import edge_config, payload_indexes
from chatbus_memory.store import (
    DENSE,
    SPARSE,
    Candidates,
    ChunkPoint,
    Cond,
    Found,
    Where,
)
from chatbus_memory.text import Sparse

log = logging.getLogger("chatbus.memory.edge")


def _condition(c: Cond) -> Any:
    if c.op == "eq":
        return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.value))
    if c.op == "any":
        return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(c.value)))
    if c.op == "lt":
        return qe.FieldCondition(key=c.key, range=qe.RangeFloat(lt=float(c.value)))
    raise ValueError(c.op)


def to_filter(w: Where, extra: list[Any] | None = None) -> qe.Filter:
    must = [_condition(c) for c in w.conds if c.op != "ne"] + list(extra or [])
    must_not: list[Any] = [
        qe.FieldCondition(key=c.key, match=qe.MatchValue(c.value)) for c in w.conds if c.op == "ne"
    ]
    return qe.Filter(must=must, must_not=must_not or None)


# What ranking and its results read of a candidate's payload (not tenant, user, or a long
# turn's whole content: a search shows a long turn's best chunk).
RANKED_FIELDS = [
    "session_id",
    "turn_id",
    "chunks",
    "text",
    "role",
    "created_at",
    "agent",
    "speaker",
]


def _sparse(s: Sparse) -> qe.SparseVector:
    return qe.SparseVector(s.indices, s.values)


class EdgeStore:
    """A :class:`~chatbus_memory.store.VectorStore` over a qdrant-edge shard at ``path``."""

    name = "qdrant-edge"

    def __init__(self, path: Path, *, optimize_after: int = 5000, idle_optimize_s: float = 30.0):
        self.path = path
        self.optimize_after = optimize_after
        self.idle_optimize_s = idle_optimize_s
        self.shard: qe.EdgeShard | None = None
        self._changes = 0
        self._optimizing: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, dims: int) -> None:
        self.shard = await asyncio.to_thread(self._open_sync, dims)
        self._timer = asyncio.create_task(self._idle_optimizer())

    def _open_sync(self, dims: int) -> qe.EdgeShard:
        config = edge_config(dims)
        if (self.path / "wal").exists():
            shard = qe.EdgeShard.load(str(self.path), config)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(self.path), config)
        have = shard.info().payload_schema
        for name, schema in payload_indexes().items():
            if name not in have:
                shard.update(qe.UpdateOperation.create_field_index(name, schema))
        return shard

    async def close(self) -> None:
        for task in (self._timer, self._optimizing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.shard is not None:
            shard, self.shard = self.shard, None
            await asyncio.to_thread(self._close_sync, shard)

    @staticmethod
    def _close_sync(shard: qe.EdgeShard) -> None:
        shard.flush()
        shard.close()

    async def ping(self) -> bool:
        if self.shard is None:
            return False
        shard = self.shard
        await asyncio.to_thread(shard.info)
        return True

    def _s(self) -> qe.EdgeShard:
        if self.shard is None:
            raise RuntimeError("vector store is not open")
        return self.shard

    # -- background optimisation -------------------------------------------------------------

    def _changed(self, n: int) -> None:
        self._changes += n
        if self._changes >= self.optimize_after:
            self._start_optimize()

    def _start_optimize(self) -> None:
        if self._optimizing is None or self._optimizing.done():
            self._changes = 0
            self._optimizing = asyncio.create_task(self._optimize())

    async def _optimize(self) -> None:
        try:
            await asyncio.to_thread(self._optimize_sync, self._s())
        except Exception:
            log.exception("shard optimisation failed")

    @staticmethod
    def _optimize_sync(shard: qe.EdgeShard) -> None:
        # merge small segments, then persist them: the write-ahead log is kept (on disk and
        # memory-mapped) only up to the last flush, so without one it grows with every write
        shard.optimize()
        shard.flush()

    async def _idle_optimizer(self) -> None:
        while True:
            await asyncio.sleep(self.idle_optimize_s)  # periodic housekeeping
            if self._changes:
                self._start_optimize()

    # -- writes ------------------------------------------------------------------------------

    async def upsert(self, points: list[ChunkPoint]) -> None:
        if not points:
            return
        edge_points = []
        for p in points:
            vector: dict[str, Any] = {DENSE: p.dense}
            if p.sparse.indices:
                vector[SPARSE] = _sparse(p.sparse)
            edge_points.append(qe.Point(p.id, vector, p.payload))
        op = qe.UpdateOperation.upsert_points(edge_points)
        await asyncio.to_thread(self._s().update, op)
        self._changed(len(points))

    async def delete(self, w: Where) -> int:
        shard = self._s()

        def run() -> int:
            f = to_filter(w)
            n = shard.count(qe.CountRequest(filter=f, exact=True))
            if n:
                shard.update(qe.UpdateOperation.delete_points_by_filter(f))
            return int(n)

        n = await asyncio.to_thread(run)
        self._changed(n)
        return n

    # -- reads -------------------------------------------------------------------------------

    async def candidates(
        self,
        w: Where,
        dense: list[float] | None,
        sparse: Sparse | None,
        limit: int,
        *,
        idf_scoped: bool = False,
    ) -> Candidates:
        return await asyncio.to_thread(self._candidates_sync, w, dense, sparse, limit, idf_scoped)

    def _candidates_sync(
        self,
        w: Where,
        dense: list[float] | None,
        sparse: Sparse | None,
        limit: int,
        idf_scoped: bool,
    ) -> Candidates:
        """Dense and BM25 candidates; each payload is read from the engine once.

        Reading a payload into Python is most of a search's cost (~3 µs per field), so only
        the fields ranking uses are read (:data:`RANKED_FIELDS`), and a BM25 hit that is also
        a dense hit takes the dense hit's payload: the BM25 query reads none, and the query
        that scores the BM25-only hits' cosine reads theirs.
        """
        shard = self._s()
        f = to_filter(w)
        fields = qe.PayloadSelector.Include(RANKED_FIELDS)
        use_sparse = sparse is not None and bool(sparse.indices)
        queries: list[qe.QueryRequest] = []
        if dense is not None:
            queries.append(
                qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest(dense, using=DENSE),
                    filter=f,
                    with_payload=fields,
                )
            )
        if sparse is not None and use_sparse:
            queries.append(
                qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest(_sparse(sparse), using=SPARSE),
                    filter=f,
                    with_payload=fields if dense is None else False,
                    with_vector=[SPARSE],
                    params=qe.SearchParams(idf=qe.IdfParams(corpus=f)) if idf_scoped else None,
                )
            )
        results = shard.query_batch(qe.QueryBatchRequest(queries)) if queries else []
        dense_hits = [_found(p) for p in results[0]] if dense is not None else []
        sparse_hits = [_found(p, with_sparse=True) for p in results[-1]] if use_sparse else []
        cosine: dict[str, float] = {}
        if dense is not None and sparse_hits:
            payloads = {h.id: h.payload for h in dense_hits}
            missing = [h.id for h in sparse_hits if h.id not in payloads]
            if missing:
                extra = shard.query(
                    qe.QueryRequest(
                        limit=len(missing),
                        query=qe.Query.Nearest(dense, using=DENSE),
                        filter=to_filter(w, [qe.HasIdCondition(set(missing))]),
                        with_payload=fields,
                    )
                )
                for p in extra:
                    cosine[str(p.id)] = float(p.score)
                    payloads[str(p.id)] = dict(p.payload or {})
            for h in sparse_hits:
                h.payload = payloads.get(h.id, {})
        return Candidates(dense_hits, sparse_hits, cosine)

    async def scroll(
        self, w: Where, *, limit: int, newest_first: bool, fields: list[str] | None = None
    ) -> list[dict[str, Any]]:
        shard = self._s()
        direction = qe.Direction.Desc if newest_first else qe.Direction.Asc
        req = qe.ScrollRequest(
            limit=limit,
            filter=to_filter(w),
            with_payload=True if fields is None else qe.PayloadSelector.Include(fields),
            order_by=qe.OrderBy("created_at", direction),
        )
        records, _ = await asyncio.to_thread(shard.scroll, req)
        return [dict(r.payload or {}) for r in records]

    async def count(self, w: Where) -> int:
        shard = self._s()
        req = qe.CountRequest(filter=to_filter(w), exact=True)
        return int(await asyncio.to_thread(shard.count, req))

    async def count_each(self, ws: list[Where]) -> list[int]:
        shard = self._s()

        def run() -> list[int]:
            return [int(shard.count(qe.CountRequest(filter=to_filter(w), exact=True))) for w in ws]

        return await asyncio.to_thread(run)

    async def payloads(
        self, w: Where, keys: list[str], limit: int = 100_000
    ) -> list[dict[str, Any]]:
        shard = self._s()

        def run() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            offset: Any = None
            f = to_filter(w)
            while len(out) < limit:
                records, offset = shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=min(1000, limit - len(out)),
                        filter=f,
                        with_payload=qe.PayloadSelector.Include(keys),
                    )
                )
                out.extend(dict(r.payload or {}) for r in records)
                if offset is None:
                    break
            return out

        return await asyncio.to_thread(run)


def _found(p: Any, *, with_sparse: bool = False) -> Found:
    indices: list[int] | None = None
    if with_sparse and isinstance(p.vector, dict):
        sv = p.vector.get(SPARSE)
        if sv is not None:
            indices = list(sv.indices)
    return Found(str(p.id), float(p.score), dict(p.payload or {}), indices)
