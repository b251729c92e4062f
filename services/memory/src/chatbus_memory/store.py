"""The vector store interface, above the embedded engine and a Qdrant server.

A stored *point* is one chunk of one turn: a dense vector ("dense"), a BM25 sparse vector
("bm25") and a payload. Payload fields: ``tenant_id``, ``session_id``, ``user_id`` (when
known), ``turn_id``, ``chunk`` / ``chunks`` (chunk 0 of a turn of several chunks also carries
the turn's full ``content``), ``text`` (the chunk), ``role``, ``agent``, ``speaker``,
``created_at``. (Shards written before also hold ``head`` and a copy of ``content``.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chatbus_memory.text import Sparse

DENSE = "dense"
SPARSE = "bm25"

KEYWORD_FIELDS = ("tenant_id", "session_id", "user_id", "turn_id", "role")

_NS = uuid.UUID("6f1d3c2a-5b7e-4c1d-9a0e-3e2f1b4c5d6e")


def point_id(tenant_id: str, session_id: str, turn_id: str, chunk: int) -> str:
    """Deterministic, so storing a turn again overwrites it instead of adding a copy."""
    return str(uuid.uuid5(_NS, f"{tenant_id}\x00{session_id}\x00{turn_id}\x00{chunk}"))


@dataclass(frozen=True)
class Cond:
    """One filter condition: ``eq`` a value, ``any`` of values, ``ne`` a value, ``lt`` a number."""

    op: Literal["eq", "any", "ne", "lt"]
    key: str
    value: Any


@dataclass(frozen=True)
class Where:
    """All conditions must hold. Always built through :func:`where`, so tenant is never missed."""

    conds: tuple[Cond, ...]


def where(
    tenant_id: str,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    head: bool | None = None,
    extra: tuple[Cond, ...] = (),
) -> Where:
    conds = [Cond("eq", "tenant_id", tenant_id)]
    if session_id is not None:
        conds.append(Cond("eq", "session_id", session_id))
    if user_id is not None:
        conds.append(Cond("eq", "user_id", user_id))
    if head is not None:
        # chunk 0 carries the turn; a bool match would be simpler, but qdrant-edge 0.9's Python
        # bindings never match booleans
        conds.append(Cond("eq" if head else "ne", "chunk", 0))
    return Where((*conds, *extra))


@dataclass
class ChunkPoint:
    id: str
    dense: list[float]
    sparse: Sparse
    payload: dict[str, Any]


@dataclass
class Found:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)
    sparse_indices: list[int] | None = None


@dataclass
class Candidates:
    """What a hybrid search brings back before fusion."""

    dense: list[Found]
    sparse: list[Found]
    # cosine similarity of sparse-only candidates (not in the dense list)
    cosine: dict[str, float]


class VectorStore(Protocol):
    name: str

    async def open(self, dims: int) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def upsert(self, points: list[ChunkPoint]) -> None: ...

    async def candidates(
        self,
        w: Where,
        dense: list[float] | None,
        sparse: Sparse | None,
        limit: int,
        *,
        idf_scoped: bool = False,
    ) -> Candidates:
        """Dense and BM25 candidates; ``idf_scoped``: BM25 IDF over ``w``'s points only."""
        ...

    async def scroll(
        self, w: Where, *, limit: int, newest_first: bool, fields: list[str] | None = None
    ) -> list[dict[str, Any]]: ...

    async def count(self, w: Where) -> int: ...

    async def count_each(self, ws: list[Where]) -> list[int]:
        """:meth:`count` of each filter, in one call (one thread hop for the embedded store)."""
        ...

    async def delete(self, w: Where) -> int: ...

    async def payloads(
        self, w: Where, keys: list[str], limit: int = 100_000
    ) -> list[dict[str, Any]]: ...
