"""Memory: what agents and the gateway ask the memory service, and the turn events it stores.

Storing is asynchronous: an agent publishes each turn as a :class:`TurnStored` event on the
JetStream stream ``MEMORY`` (subject ``memory.turn.v1``); the memory service consumes it with a
durable consumer and acks once the turn is stored. Everything else is request/reply.

Every message carries ``tenant_id``; recall never crosses tenants, and crosses sessions only
with ``scope="user"`` and a ``user_id``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from chatbus.contracts.base import Message
from chatbus.contracts.chat import Turn

MEMORY_STREAM = "MEMORY"
"""The JetStream stream that holds turn events until the memory service has stored them."""

Scope = Literal["session", "user"]
SearchMode = Literal["hybrid", "dense", "bm25"]

_ID = Field(min_length=1, max_length=200)


class TurnStored(Message):
    """Event: one turn of a session happened and should be remembered.

    ``event_id`` identifies the turn for idempotency (the publisher derives it from the request
    id and the turn's index); it is also the JetStream ``Nats-Msg-Id``. Storing the same event
    twice stores it once.
    """

    subject: ClassVar[str] = "memory.turn.v1"

    event_id: str = _ID
    tenant_id: str = "default"
    session_id: str = _ID
    user_id: str | None = None
    turn: Turn

    @model_validator(mode="after")
    def _content_not_blank(self) -> TurnStored:
        if not self.turn.content.strip():
            raise ValueError("turn.content must not be empty")
        return self


class TurnsIndexed(Message):
    """Notice (core NATS, after the fact): these turn events are stored and searchable now."""

    subject: ClassVar[str] = "memory.indexed.v1"

    event_ids: list[str] = Field(default_factory=list)
    sessions: list[str] = Field(default_factory=list)


class SearchMemory(Message):
    """Find earlier turns relevant to ``query``.

    ``scope="session"`` searches ``session_id``; ``scope="user"`` searches every session of
    ``user_id`` in the tenant (falling back to the session when no user is given).
    ``threshold`` is the minimum cosine similarity of a recalled turn (a turn sharing at least
    half of the query's rare words passes too); ``None`` means the service's default and ``0``
    returns the best ``k`` whatever their score.
    """

    subject: ClassVar[str] = "memory.search.v1"

    tenant_id: str = "default"
    session_id: str | None = None
    user_id: str | None = None
    scope: Scope = "session"
    query: str = Field(min_length=1)
    k: int = Field(default=5, ge=1, le=100)
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    mode: SearchMode = "hybrid"

    @model_validator(mode="after")
    def _needs_a_scope(self) -> SearchMemory:
        if not self.query.strip():
            raise ValueError("query must not be empty")
        if self.session_id is None and (self.scope != "user" or self.user_id is None):
            raise ValueError("session_id is required (or scope='user' with a user_id)")
        return self


class ScoredTurn(Message):
    """A recalled turn. For a long (chunked) turn, ``turn.content`` is its best chunk."""

    turn: Turn
    score: float
    similarity: float = 0.0
    session_id: str
    turn_id: str


class SearchResult(Message):
    hits: list[ScoredTurn] = Field(default_factory=list)


class GetHistory(Message):
    """The last ``limit`` turns of a session (oldest first), optionally before a time."""

    subject: ClassVar[str] = "memory.history.v1"

    tenant_id: str = "default"
    session_id: str = _ID
    limit: int = Field(default=50, ge=1, le=1000)
    before: float | None = None


class History(Message):
    session_id: str
    turns: list[Turn] = Field(default_factory=list)


class Forget(Message):
    """Delete every trace of a session, or of a user (all their sessions) in a tenant."""

    subject: ClassVar[str] = "memory.forget.v1"

    tenant_id: str = "default"
    session_id: str | None = Field(default=None, min_length=1, max_length=200)
    user_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _exactly_one(self) -> Forget:
        if (self.session_id is None) == (self.user_id is None):
            raise ValueError("give exactly one of session_id or user_id")
        return self


class Forgotten(Message):
    sessions: list[str] = Field(default_factory=list)
    deleted: int = 0


class GetStats(Message):
    """Counts for a tenant (and a session when given), and how the service is set up."""

    subject: ClassVar[str] = "memory.stats.v1"

    tenant_id: str = "default"
    session_id: str | None = None


class MemoryStats(Message):
    points: int = 0
    turns: int = 0
    summaries: int = 0
    session_turns: int | None = None
    session_summaries: int | None = None
    store: str = ""
    embedder: str = ""
    dims: int = 0


class ImportTurns(Message):
    """Store a past transcript of a session now (request/reply: stored when answered).

    Turns without ``created_at`` get increasing times in their order. Re-importing the same
    transcript stores nothing twice.
    """

    subject: ClassVar[str] = "memory.import.v1"

    tenant_id: str = "default"
    session_id: str = _ID
    user_id: str | None = None
    turns: list[Turn] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _no_blank_turns(self) -> ImportTurns:
        for i, t in enumerate(self.turns):
            if not t.content.strip():
                raise ValueError(f"turns[{i}].content must not be empty")
        return self


class Imported(Message):
    session_id: str
    imported: int
    chunks: int = 0


ALL_SUBJECTS = (
    TurnStored.subject,
    TurnsIndexed.subject,
    SearchMemory.subject,
    GetHistory.subject,
    Forget.subject,
    GetStats.subject,
    ImportTurns.subject,
)
