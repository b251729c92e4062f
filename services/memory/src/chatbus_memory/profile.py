"""User profiles: the stable facts each user stated, per tenant and user (memory service).

A profile lives in the memory service's own JetStream key-value bucket ``MEMORY_PROFILES`` (so
an accepted fact is durable), one key per (tenant, user): a hash, since user ids may hold
characters that keys may not. Writes are compare-and-set on the key's revision, retried on a
race, so two replicas never lose each other's facts.

Newer wins, older is history: a fact said at time *t* replaces the current value only when *t*
is not older than it (an imported old transcript cannot undo what the user said last week), and
the replaced value moves to ``history`` with the time it stopped being true.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TypeVar

import nats.js.errors
from nats.js.kv import KeyValue

from chatbus.bus import Bus
from chatbus.contracts.memory import (
    MAX_PROFILE_FACTS,
    FactSource,
    GetProfile,
    ProfileChange,
    ProfileFact,
    ScoredTurn,
    UpdateProfile,
    UserProfile,
)
from chatbus.errors import RemoteError
from chatbus.streams import ensure_kv
from chatbus_memory.engine import Incoming
from chatbus_memory.profile_extract import FactExtractor, Facts

log = logging.getLogger("chatbus.memory.profile")

H = TypeVar("H", bound=ScoredTurn)

BUCKET = "MEMORY_PROFILES"
MAX_HISTORY = 50


class ProfileFull(ValueError):
    """A new fact for a profile that holds :data:`MAX_PROFILE_FACTS` already.

    Without this bound a profile grew with every new fact name until it no longer fitted in
    one NATS message, and from then on could be neither written nor shown in a prompt.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"the profile is full; cannot add {key!r}")
        self.key = key


def profile_key(tenant_id: str, user_id: str) -> str:
    return hashlib.sha256(f"{tenant_id}\x00{user_id}".encode()).hexdigest()[:48]


def merge(
    profile: UserProfile,
    facts: dict[str, str | None],
    *,
    at: float,
    source: FactSource,
    session_id: str | None = None,
) -> bool:
    """Apply ``facts`` (``None`` removes) said or edited at ``at``; True when anything changed."""
    changed = False
    for key, value in facts.items():
        current = profile.facts.get(key)
        if current is not None and current.updated_at > at:
            continue  # something newer is already known
        if value is not None:
            value = value.strip()
        if current is not None and current.value == value:
            if current.updated_at < at:
                current.updated_at = at
            continue
        if current is None and value is None:
            continue
        if current is not None:
            profile.history.append(
                ProfileChange(
                    key=key,
                    value=current.value,
                    since=current.updated_at,
                    until=at,
                    replaced_by=value,
                    source=current.source,
                )
            )
            del profile.facts[key]
        if value is not None:
            if current is None and len(profile.facts) >= MAX_PROFILE_FACTS:
                raise ProfileFull(key)
            profile.facts[key] = ProfileFact(
                value=value, updated_at=at, source=source, session_id=session_id
            )
        changed = True
    if changed:
        profile.history = profile.history[-MAX_HISTORY:]
        profile.updated_at = max(profile.updated_at, at)
    return changed


def superseded(profile: UserProfile) -> dict[str, str]:
    """Values the user no longer holds -> what replaced them (lower-cased; "" when removed)."""
    current = {k: f.value.lower() for k, f in profile.facts.items()}
    out: dict[str, str] = {}
    for change in profile.history:
        old, now = change.value.lower(), current.get(change.key, "")
        if old != now:
            out[old] = now
    return out


@dataclass
class Profiles:
    """Reads, edits and feeds profiles (the bucket is the only copy: no stale cache)."""

    bus: Bus
    extractor: FactExtractor
    _kv: KeyValue | None = None

    async def open(self) -> None:
        # Replicated like every other bucket: with one copy, a dead NATS node would take
        # every profile with it until it came back.
        self._kv = await ensure_kv(self.bus, BUCKET, ttl_s=0)

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "Profiles.open() first"
        return self._kv

    async def _load(self, tenant_id: str, user_id: str) -> tuple[int, UserProfile]:
        key = profile_key(tenant_id, user_id)
        try:
            entry = await self.kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return 0, UserProfile(tenant_id=tenant_id, user_id=user_id)
        profile = UserProfile.model_validate_json(entry.value or b"{}")
        return int(entry.revision or 0), profile

    async def get(self, tenant_id: str, user_id: str) -> UserProfile:
        return (await self._load(tenant_id, user_id))[1]

    async def change(
        self,
        tenant_id: str,
        user_id: str,
        facts: dict[str, str | None],
        *,
        at: float,
        source: FactSource,
        session_id: str | None = None,
    ) -> UserProfile:
        """Merge and write back with compare-and-set, reloading after a concurrent write."""
        key = profile_key(tenant_id, user_id)
        for _ in range(20):
            revision, profile = await self._load(tenant_id, user_id)
            if not merge(profile, facts, at=at, source=source, session_id=session_id):
                return profile
            data = profile.to_bytes()
            try:
                if revision:
                    await self.kv.update(key, data, last=revision)
                else:
                    await self.kv.create(key, data)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
                continue  # another writer won the race: merge again onto theirs
            return profile
        raise RuntimeError("profile kept changing under us")

    async def forget(self, tenant_id: str, user_id: str) -> None:
        await self.kv.purge(profile_key(tenant_id, user_id))

    async def observe(self, items: list[Incoming]) -> None:
        """Feed stored turns to the extractor; facts go to their authors' profiles."""
        mine = [i for i in items if i.user_id and i.turn.role == "user"]
        if not mine:
            return
        found = await self.extractor.extract([i.turn for i in mine])
        for item, facts in zip(mine, found, strict=True):
            if facts and item.user_id:
                await self._said(item, facts)

    async def _said(self, item: Incoming, facts: Facts) -> None:
        assert item.user_id is not None
        at = item.turn.created_at or time.time()
        try:
            await self.change(
                item.tenant_id,
                item.user_id,
                dict(facts),
                at=at,
                source="said",
                session_id=item.session_id,
            )
        except Exception:  # a missed fact must not fail storing the turn
            log.warning("could not update a profile", exc_info=True)

    # -- bus handlers ------------------------------------------------------------------------

    async def handle_get(self, q: GetProfile) -> UserProfile:
        return await self.get(q.tenant_id, q.user_id)

    async def handle_update(self, q: UpdateProfile) -> UserProfile:
        try:
            return await self.change(
                q.tenant_id, q.user_id, q.facts, at=time.time(), source="edited"
            )
        except ProfileFull as e:
            full = f"a profile holds at most {MAX_PROFILE_FACTS} facts; remove one first"
            raise RemoteError("invalid", full, {"loc": [e.key], "msg": full}) from e


def demote_superseded(hits: list[H], profile: UserProfile, factor: float = 0.5) -> list[H]:
    """Recall prefers the newer fact: a hit that mentions a value the user no longer holds
    (and no current one) sinks below the others of similar score."""
    old = superseded(profile)
    if not old or not hits:
        return hits
    scored = []
    for h in hits:
        text = h.turn.content.lower()
        stale = any(v in text and not (now and now in text) for v, now in old.items())
        scored.append((h.score * factor if stale else h.score, h))
    scored.sort(key=lambda x: x[0], reverse=True)
    return [h for _, h in scored]
