"""The vector store on a Qdrant server, through qdrant-client (``QDRANT_URL``).

Tested against qdrant-client's local mode (``AsyncQdrantClient(location=":memory:")``), which
has the same API as the server client.
"""

from __future__ import annotations

import logging
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from chatbus_memory.store import (
    DENSE,
    KEYWORD_FIELDS,
    SPARSE,
    Candidates,
    ChunkPoint,
    Cond,
    Found,
    Where,
)
from chatbus_memory.text import Sparse

log = logging.getLogger("chatbus.memory.qdrant")


def _condition(c: Cond) -> models.FieldCondition:
    if c.op in ("eq", "ne"):
        return models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value))
    if c.op == "any":
        return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.value)))
    if c.op == "lt":
        return models.FieldCondition(key=c.key, range=models.Range(lt=float(c.value)))
    raise ValueError(c.op)


def to_filter(w: Where, extra: list[Any] | None = None) -> models.Filter:
    must: list[Any] = [_condition(c) for c in w.conds if c.op != "ne"]
    must += list(extra or [])
    must_not: list[Any] = [_condition(c) for c in w.conds if c.op == "ne"]
    return models.Filter(must=must, must_not=must_not or None)


def _sparse(s: Sparse) -> models.SparseVector:
    return models.SparseVector(indices=s.indices, values=s.values)


class QdrantStore:
    """A :class:`~chatbus_memory.store.VectorStore` over one collection of a Qdrant server."""

    name = "qdrant"

    def __init__(self, client: AsyncQdrantClient, collection: str) -> None:
        self.client = client
        self.collection = collection

    async def open(self, dims: int) -> None:
        if not await self.client.collection_exists(self.collection):
            await self.client.create_collection(
                self.collection,
                vectors_config={
                    DENSE: models.VectorParams(size=dims, distance=models.Distance.COSINE)
                },
                sparse_vectors_config={
                    SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
            )
        schemas: dict[str, Any] = {k: models.PayloadSchemaType.KEYWORD for k in KEYWORD_FIELDS}
        schemas["tenant_id"] = models.KeywordIndexParams(
            type=models.KeywordIndexType.KEYWORD, is_tenant=True
        )
        schemas["chunk"] = models.PayloadSchemaType.INTEGER
        schemas["created_at"] = models.PayloadSchemaType.FLOAT
        for name, schema in schemas.items():
            try:
                await self.client.create_payload_index(self.collection, name, schema)
            except Exception as e:  # an index that exists already is fine
                log.debug("payload index %s: %s", name, e)

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> bool:
        return bool(await self.client.collection_exists(self.collection))

    async def upsert(self, points: list[ChunkPoint]) -> None:
        if not points:
            return
        structs = []
        for p in points:
            vector: dict[str, Any] = {DENSE: p.dense}
            if p.sparse.indices:
                vector[SPARSE] = _sparse(p.sparse)
            structs.append(models.PointStruct(id=p.id, vector=vector, payload=p.payload))
        await self.client.upsert(self.collection, points=structs, wait=True)

    async def delete(self, w: Where) -> int:
        f = to_filter(w)
        n = (await self.client.count(self.collection, count_filter=f, exact=True)).count
        if n:
            await self.client.delete(
                self.collection, points_selector=models.FilterSelector(filter=f), wait=True
            )
        return int(n)

    async def candidates(
        self,
        w: Where,
        dense: list[float] | None,
        sparse: Sparse | None,
        limit: int,
        *,
        idf_scoped: bool = False,
    ) -> Candidates:
        f = to_filter(w)
        requests: list[models.QueryRequest] = []
        if dense is not None:
            requests.append(
                models.QueryRequest(
                    query=dense, using=DENSE, filter=f, limit=limit, with_payload=True
                )
            )
        use_sparse = sparse is not None and bool(sparse.indices)
        if use_sparse and sparse is not None:
            requests.append(
                models.QueryRequest(
                    query=_sparse(sparse),
                    using=SPARSE,
                    filter=f,
                    limit=limit,
                    with_payload=True,
                    with_vector=[SPARSE],
                    params=(
                        models.SearchParams(idf=models.IdfCorpusParams(corpus=f))
                        if idf_scoped
                        else None
                    ),
                )
            )
        responses = (
            await self.client.query_batch_points(self.collection, requests) if requests else []
        )
        dense_hits = [_found(p) for p in responses[0].points] if dense is not None else []
        sparse_hits = [_found(p, True) for p in responses[-1].points] if use_sparse else []
        cosine: dict[str, float] = {}
        seen = {h.id for h in dense_hits}
        missing = [h.id for h in sparse_hits if h.id not in seen]
        if dense is not None and missing:
            res = await self.client.query_points(
                self.collection,
                query=dense,
                using=DENSE,
                query_filter=to_filter(w, [models.HasIdCondition(has_id=list(missing))]),
                limit=len(missing),
                with_payload=False,
            )
            cosine = {str(p.id): float(p.score) for p in res.points}
        return Candidates(dense_hits, sparse_hits, cosine)

    async def scroll(
        self, w: Where, *, limit: int, newest_first: bool, fields: list[str] | None = None
    ) -> list[dict[str, Any]]:
        direction = models.Direction.DESC if newest_first else models.Direction.ASC
        records, _ = await self.client.scroll(
            self.collection,
            scroll_filter=to_filter(w),
            limit=limit,
            order_by=models.OrderBy(key="created_at", direction=direction),
            with_payload=True if fields is None else fields,
        )
        return [dict(r.payload or {}) for r in records]

    async def count(self, w: Where) -> int:
        res = await self.client.count(self.collection, count_filter=to_filter(w), exact=True)
        return int(res.count)

    async def count_each(self, ws: list[Where]) -> list[int]:
        return [await self.count(w) for w in ws]

    async def payloads(
        self, w: Where, keys: list[str], limit: int = 100_000
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset: Any = None
        f = to_filter(w)
        while len(out) < limit:
            records, offset = await self.client.scroll(
                self.collection,
                scroll_filter=f,
                limit=min(1000, limit - len(out)),
                offset=offset,
                with_payload=keys,
            )
            out.extend(dict(r.payload or {}) for r in records)
            if offset is None:
                break
        return out


def _found(p: models.ScoredPoint, with_sparse: bool = False) -> Found:
    indices: list[int] | None = None
    if with_sparse and isinstance(p.vector, dict):
        sv = p.vector.get(SPARSE)
        if isinstance(sv, models.SparseVector):
            indices = list(sv.indices)
    return Found(str(p.id), float(p.score), dict(p.payload or {}), indices)
