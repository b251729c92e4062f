"""The business records tools create (orders, tickets, leads, invoices), owned by the agent runtime.

A record is JSON at ``agent:{tenant}:record:{kind}:{id}``, indexed newest-first per tenant,
per session and per user. Only the agent runtime touches these keys: tools through
:class:`CallerRecords` (the caller's own records only), other services through the
``records.*.v1`` bus requests answered by :mod:`chatbus.agent.records_service`.

A record belongs to the user who caused it (``user_id``); a record made for an anonymous caller
belongs to its session. :meth:`Caller.owns` is the one rule that decides who may see it.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chatbus.agent.keyspace import REDIS_PREFIX
from chatbus.contracts.chat import ChatRequest
from chatbus.redis_link import Arg, RedisLink

# Fields the store sets itself; what a tool passes can never override them.
IDENTITY_FIELDS = ("id", "kind", "created_at", "tenant_id", "session_id", "user_id")
SCAN_BATCH = 100
SCAN_ROUNDS = 20  # at most SCAN_ROUNDS * SCAN_BATCH index entries read for one page


@dataclass(frozen=True)
class Caller:
    """Who a tool acts for: taken from the request, never from the model's arguments."""

    tenant_id: str
    session_id: str
    user_id: str | None = None

    @classmethod
    def of(cls, req: ChatRequest) -> Caller:
        return cls(req.tenant_id, req.session_id, req.user_id or None)

    def owns(self, record: dict[str, Any]) -> bool:
        """A user's record is theirs alone; an anonymous one belongs to its session."""
        owner = record.get("user_id")
        if owner:
            return bool(self.user_id) and owner == self.user_id
        return self.user_id is None and record.get("session_id") == self.session_id


def encode_cursor(score: float, record_id: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r}:{record_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """``(score, id)`` of the last record of the previous page; ValueError when malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, record_id = raw.split(":", 1)
        return float(score), record_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor: not a cursor this API returned") from None


class RecordStore:
    """Tenant-wide access to the records (the runtime's; tools get :class:`CallerRecords`)."""

    def __init__(self, redis: RedisLink) -> None:
        self.redis = redis

    @staticmethod
    def key(tenant_id: str, kind: str, record_id: str) -> str:
        return f"{REDIS_PREFIX}{tenant_id}:record:{kind}:{record_id}"

    @staticmethod
    def index(tenant_id: str, kind: str, by: str = "", value: str = "") -> str:
        base = f"{REDIS_PREFIX}{tenant_id}:records:{kind}"
        return f"{base}:{by}:{value}" if by else base

    async def put(
        self,
        tenant_id: str,
        kind: str,
        record_id: str,
        data: dict[str, Any],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        only_new: bool = False,
    ) -> dict[str, Any] | None:
        """Store (or replace) a record; returns it with ``id``, ``kind`` and ``created_at``.

        With ``only_new`` an existing record is kept and None returned.
        """
        now = time.time()
        record = {k: v for k, v in data.items() if k not in IDENTITY_FIELDS}
        record.update(id=record_id, kind=kind, created_at=now, tenant_id=tenant_id)
        record.update(session_id=session_id, user_id=user_id)
        key = self.key(tenant_id, kind, record_id)
        body = json.dumps(record, default=str)
        if only_new and not await self.redis.call("SET", key, body, "NX"):
            return None
        block: list[list[Arg]] = [] if only_new else [["SET", key, body]]
        block.append(["ZADD", self.index(tenant_id, kind), now, record_id])
        if session_id:
            by_session = self.index(tenant_id, kind, "session", session_id)
            block.append(["ZADD", by_session, now, record_id])
        if user_id:
            block.append(["ZADD", self.index(tenant_id, kind, "user", user_id), now, record_id])
        await self.redis.transaction(block)
        return record

    async def update(
        self, tenant_id: str, kind: str, record_id: str, changes: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Change fields of an existing record (never its identity); None when it is gone."""
        record = await self.get(tenant_id, kind, record_id)
        if record is None:
            return None
        record.update({k: v for k, v in changes.items() if k not in IDENTITY_FIELDS})
        await self.redis.call(
            "SET", self.key(tenant_id, kind, record_id), json.dumps(record, default=str), "XX"
        )
        return record

    async def get(self, tenant_id: str, kind: str, record_id: str) -> dict[str, Any] | None:
        raw = await self.redis.call("GET", self.key(tenant_id, kind, record_id))
        return json.loads(raw) if raw else None

    async def page(
        self,
        tenant_id: str,
        kind: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page, newest first, of the tenant's (or a session's / user's) records.

        Returns the records and the cursor of the next page (None on the last page).
        """
        if session_id:
            index = self.index(tenant_id, kind, "session", session_id)
        elif user_id:
            index = self.index(tenant_id, kind, "user", user_id)
        else:
            index = self.index(tenant_id, kind)

        def keep(record: dict[str, Any]) -> bool:  # both filters given: the user's, too
            return not (session_id and user_id) or record.get("user_id") == user_id

        after = decode_cursor(cursor) if cursor else None
        found: list[tuple[float, dict[str, Any]]] = []
        for _ in range(SCAN_ROUNDS):
            batch = await self._after(index, after, SCAN_BATCH)
            if not batch:
                return [r for _, r in found], None
            records = await self._load(tenant_id, kind, (i for i, _ in batch))
            for (record_id, score), record in zip(batch, records, strict=True):
                after = (score, record_id)
                if record is not None and keep(record):
                    found.append((score, record))
                if len(found) > limit:
                    last_score, last = found[limit - 1]
                    return [r for _, r in found[:limit]], encode_cursor(last_score, last["id"])
        # Scanned enough for one request: the page may be short; the cursor says where to go on.
        return [r for _, r in found], encode_cursor(*after) if after else None

    async def list(
        self,
        tenant_id: str,
        kind: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """The first page (newest first), filtered by session or user when given."""
        records, _ = await self.page(
            tenant_id, kind, session_id=session_id, user_id=user_id, limit=limit
        )
        return records

    async def _after(
        self, index: str, after: tuple[float, str] | None, count: int
    ) -> builtins.list[tuple[str, float]]:
        """Up to ``count`` index entries that come after ``after`` (newest first)."""
        if after is None:
            flat = await self.redis.call("ZREVRANGE", index, 0, count - 1, "WITHSCORES")
        else:
            score = after[0]
            # Same-score entries sort by id, descending: skip those up to and including ``last``.
            ties = await self.redis.call("ZCOUNT", index, score, score)
            flat = await self.redis.call(
                "ZREVRANGEBYSCORE", index, score, "-inf", "WITHSCORES", "LIMIT", 0, count + ties
            )
        rows = zip(flat[::2], flat[1::2], strict=True)
        out = []
        for member, s in rows:
            record_id = member.decode() if isinstance(member, bytes) else str(member)
            s = float(s)
            if after is not None and s == after[0] and record_id >= after[1]:
                continue
            out.append((record_id, s))
        return out[:count]

    async def _load(
        self, tenant_id: str, kind: str, ids: Iterable[str]
    ) -> builtins.list[dict[str, Any] | None]:
        keys = [self.key(tenant_id, kind, i) for i in ids]
        if not keys:
            return []
        found = await self.redis.call("MGET", *keys)
        return [json.loads(raw) if raw else None for raw in found]


def without_owner(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a tool shows it to the model: without tenant, session and user."""
    return {k: v for k, v in record.items() if k not in ("tenant_id", "session_id", "user_id")}


class CallerRecords:
    """A tool's view of the records: only the caller's, and new ones are made for the caller.

    There is no way to name another tenant, user or session here: they come from the request.
    """

    def __init__(self, store: RecordStore, caller: Caller) -> None:
        self.store, self.caller = store, caller

    async def get(self, kind: str, record_id: str) -> dict[str, Any] | None:
        """The record when it exists and is the caller's; None otherwise (indistinguishably)."""
        record = await self.store.get(self.caller.tenant_id, kind, record_id)
        return record if record is not None and self.caller.owns(record) else None

    async def create(self, kind: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        c = self.caller
        made = await self.store.put(
            c.tenant_id, kind, record_id, data, session_id=c.session_id, user_id=c.user_id
        )
        assert made is not None
        return made

    async def update(
        self, kind: str, record_id: str, changes: dict[str, Any]
    ) -> dict[str, Any] | None:
        if await self.get(kind, record_id) is None:
            return None
        return await self.store.update(self.caller.tenant_id, kind, record_id, changes)

    async def list(self, kind: str, limit: int = 20) -> list[dict[str, Any]]:
        c = self.caller
        if c.user_id:
            return await self.store.list(c.tenant_id, kind, user_id=c.user_id, limit=limit)
        found = await self.store.list(c.tenant_id, kind, session_id=c.session_id, limit=limit)
        return [r for r in found if c.owns(r)]


@dataclass(frozen=True)
class DemoRecord:
    """A record an agent offers as demo data (seeded only when a deployment asks for it)."""

    kind: str
    record_id: str
    data: dict[str, Any]


async def seed_demo(
    store: RecordStore,
    records: Iterable[DemoRecord],
    owners: Iterable[tuple[str, str]],
    log: Callable[[str], None] | None = None,
) -> int:
    """Store ``records`` for each ``(tenant, user)`` in ``owners``; existing ones are kept."""
    made = 0
    for tenant_id, user_id in owners:
        for r in records:
            if await store.put(
                tenant_id, r.kind, r.record_id, r.data, user_id=user_id, only_new=True
            ):
                made += 1
        if log is not None:
            log(f"demo records available to user {user_id!r} of tenant {tenant_id!r}")
    return made
