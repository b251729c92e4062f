"""Memory: what agents and the gateway ask the memory service, and the turn events it stores.

Storing is asynchronous: an agent publishes the turns of each answered message as one
:class:`TurnsStored` event on the JetStream stream ``MEMORY`` (subject ``memory.turns.v1``; the
older one-turn :class:`TurnStored` on ``memory.turn.v1`` is still stored); the memory service
consumes them with durable consumers and acks once the turns are stored. An import
(:class:`ImportTurns`) is request/reply; once stored, the memory service publishes
:class:`TurnsImported` on the same stream, so the agent runtime learns that the session has a
past it holds no history of.
Forgetting is not asked here: it is the forget event (:mod:`chatbus.contracts.forget`).

Every message carries ``tenant_id``; recall never crosses tenants, and crosses sessions only
with ``scope="user"`` and a ``user_id``.
"""

from __future__ import annotations

import re
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


class TurnsStored(Message):
    """Event: the turns of one answered message (the user's, the reply) should be remembered.

    One JetStream message for the exchange instead of one per turn: half the stream writes.
    ``event_id`` is the ``Nats-Msg-Id`` (the publisher derives it from the request id); turn
    ``i`` is stored as ``f"{event_id}:{i}"``, so storing the event twice stores it once.
    """

    subject: ClassVar[str] = "memory.turns.v1"

    event_id: str = _ID
    tenant_id: str = "default"
    session_id: str = _ID
    user_id: str | None = None
    turns: list[Turn] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _no_blank_turns(self) -> TurnsStored:
        for i, t in enumerate(self.turns):
            if not t.content.strip():
                raise ValueError(f"turns[{i}].content must not be empty")
        return self

    def turn_id(self, index: int) -> str:
        return f"{self.event_id}:{index}"


class TurnsStoredBatch(Message):
    """Event: several :class:`TurnsStored` written to the stream at once (agents group the
    events of concurrent messages into one JetStream write). Each is stored as if it came
    alone; storing one twice stores it once (its ``event_id``)."""

    subject: ClassVar[str] = "memory.turns.batch.v1"

    events: list[TurnsStored] = Field(min_length=1, max_length=1024)


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


IMPORTS_DURABLE = "memory-imports-agent"
"""The agent runtime's durable consumer of :class:`TurnsImported` (every agent service's)."""


class TurnsImported(Message):
    """Event (JetStream, stream ``MEMORY``): ``turns`` turns of a session were imported.

    The agent runtime consumes it (durable consumer :data:`IMPORTS_DURABLE`, shared by every
    agent service) and counts them as the session's (and user's) past, so it searches memory
    for them; a session it knows nothing of is never searched. ``event_id`` is the
    ``Nats-Msg-Id``: the same transcript imported twice within the stream's duplicate window
    is one event.
    """

    subject: ClassVar[str] = "memory.imported.v1"

    event_id: str = _ID
    tenant_id: str = "default"
    session_id: str = _ID
    user_id: str | None = None
    turns: int = Field(ge=0)


# -- user profiles -----------------------------------------------------------------------------

PROFILE_KEY = r"^[a-z][a-z0-9_]{0,39}$"
"""A profile fact's name: ``city``, ``plan``, ``preferred_language`` ..."""

MAX_PROFILE_FACTS = 50
MAX_FACT_CHARS = 500

FactSource = Literal["said", "edited"]


class ProfileFact(Message):
    """One current fact about a user: its value, when it was said or edited, and where."""

    value: str = Field(min_length=1, max_length=MAX_FACT_CHARS)
    updated_at: float = 0.0
    source: FactSource = "said"
    session_id: str | None = None


class ProfileChange(Message):
    """A fact that is no longer current: replaced by a newer value (or removed) at ``until``."""

    key: str
    value: str
    since: float = 0.0
    until: float = 0.0
    replaced_by: str | None = None
    source: FactSource = "said"


class UserProfile(Message):
    """Stable facts a user stated (or an operator edited), per tenant and user.

    ``facts`` holds the current value of each fact; ``history`` the values that were replaced
    or removed, oldest first (bounded), so "I live in Berlin" followed by "I moved to Paris"
    leaves ``facts["city"] = Paris`` and Berlin in ``history``.
    """

    tenant_id: str = "default"
    user_id: str
    facts: dict[str, ProfileFact] = Field(default_factory=dict)
    history: list[ProfileChange] = Field(default_factory=list)
    updated_at: float = 0.0

    def values(self) -> dict[str, str]:
        return {k: f.value for k, f in self.facts.items()}


class GetProfile(Message):
    """The profile of ``user_id`` in the tenant (an empty one when nothing is known)."""

    subject: ClassVar[str] = "memory.profile.get.v1"

    tenant_id: str = "default"
    user_id: str = _ID


class UpdateProfile(Message):
    """Merge ``facts`` into a profile: a string sets a fact, ``None`` removes it."""

    subject: ClassVar[str] = "memory.profile.update.v1"

    tenant_id: str = "default"
    user_id: str = _ID
    facts: dict[str, str | None] = Field(max_length=MAX_PROFILE_FACTS)

    @model_validator(mode="after")
    def _valid_facts(self) -> UpdateProfile:
        for key, value in self.facts.items():
            if not re.fullmatch(PROFILE_KEY, key):
                raise ValueError(f"fact name {key!r} must match {PROFILE_KEY}")
            if value is not None and not 0 < len(value.strip()) <= MAX_FACT_CHARS:
                raise ValueError(f"fact {key!r} must be 1-{MAX_FACT_CHARS} characters or null")
        return self


ALL_SUBJECTS = (
    TurnStored.subject,
    TurnsStored.subject,
    TurnsIndexed.subject,
    SearchMemory.subject,
    GetHistory.subject,
    GetStats.subject,
    ImportTurns.subject,
    TurnsImported.subject,
    GetProfile.subject,
    UpdateProfile.subject,
)
