"""API keys: each belongs to a tenant; only the sha256 of a key is stored (in Redis).

A key reads ``cbk_<key_id>_<secret>``. Redis holds ``<prefix>apikey:<sha256>`` (a hash with
the key id, tenant, name and creation time) and ``<prefix>apikey-id:<key_id>`` -> sha256, so a
key can be revoked by its id without knowing it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from chatbus.redis_link import RedisLink

KEY_PREFIX = "cbk_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    name: str = ""
    created_at: float = 0.0


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, redis: RedisLink, prefix: str, cache_s: float = 0.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def _by_hash(self, h: str) -> str:
        return f"{self.prefix}apikey:{h}"

    def _by_id(self, key_id: str) -> str:
        return f"{self.prefix}apikey-id:{key_id}"

    async def create(self, tenant: str, name: str = "") -> tuple[str, ApiKey]:
        """A new key for ``tenant``: the key itself (shown once) and its record."""
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
        record = ApiKey(key_id=key_id, tenant=tenant, name=name, created_at=time.time())
        h = digest(key)
        fields = ("key_id", key_id, "tenant", tenant, "name", name)
        await self.redis.transaction(
            [
                ("HSET", self._by_hash(h), *fields, "created_at", str(record.created_at)),
                ("SET", self._by_id(key_id), h),
            ]
        )
        return key, record

    async def revoke(self, key_id: str) -> bool:
        h = await self.redis.call("GET", self._by_id(key_id))
        if h is None:
            return False
        await self.redis.call("DEL", self._by_hash(_text(h)), self._by_id(key_id))
        return True

    async def list(self) -> list[ApiKey]:
        out = []
        async for name in self.redis.scan(f"{self.prefix}apikey:*"):
            record = _record(await self.redis.call("HGETALL", name))
            if record is not None:
                out.append(record)
        return sorted(out, key=lambda k: (k.tenant, k.created_at))

    async def lookup(self, key: str) -> ApiKey | None:
        """The key's record, or None when it is unknown or revoked (cached ``cache_s``)."""
        h = digest(key)
        now = time.monotonic()
        cached = self._cache.get(h)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = _record(await self.redis.call("HGETALL", self._by_hash(h)))
        if self.cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[h] = (now + self.cache_s, record)
        return record


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _record(flat: Sequence[bytes]) -> ApiKey | None:
    """The key of an HGETALL reply (field, value, field, value …), if it is one."""
    fields = {_text(k): _text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
    if "tenant" not in fields or "key_id" not in fields:
        return None
    return ApiKey(
        key_id=fields["key_id"],
        tenant=fields["tenant"],
        name=fields.get("name", ""),
        created_at=float(fields.get("created_at", "0")),
    )
