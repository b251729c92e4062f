"""``Idempotency-Key``: a repeated POST gets the first answer again, with no second model call.

Claimed inside the session's turn (see ``pipeline``): a repeat of a request always waits in the
same session's queue behind it, so when the repeat's turn comes the first run has finished
(its reply is stored for ``ttl_s``: replayed) or failed (its claim removed: this one runs).
A claim still pending then belongs to a run whose gateway lost the turn (it died): this run
takes it over. Reusing a key with a different request is a 409.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from chatbus.contracts.chat import ChatReply
from chatbus.redis_link import RedisLink
from chatbus_gateway.api.errors import ApiError

# One rule for every path (sync, stream, OpenAI, async): 1 to MAX_KEY characters.
MAX_KEY = 200

# KEYS: record. ARGV: fingerprint, pending_ttl_ms.
# Returns {"new"} (claimed) or {"done", fingerprint, reply} or {"other", fingerprint}.
BEGIN = """
local got = redis.call('HMGET', KEYS[1], 'state', 'fp', 'reply')
if got[2] and got[2] ~= ARGV[1] then return {'other', got[2]} end
if got[1] == 'done' and got[3] then return {'done', got[2], got[3]} end
redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'new'}
"""


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def check_key(key: str) -> str:
    """``key`` when it is a usable Idempotency-Key, else a 422."""
    if not key or len(key) > MAX_KEY:
        raise ApiError(422, f"Idempotency-Key: 1 to {MAX_KEY} characters", param="Idempotency-Key")
    return key


class Idempotency:
    def __init__(self, redis: RedisLink, prefix: str, ttl_s: int, pending_ttl_s: float) -> None:
        self.redis = redis
        self.prefix = f"{prefix}idem:"
        self.ttl_s = ttl_s
        self.pending_ttl_ms = max(int(pending_ttl_s * 1000), 1)
        self._begin = redis.script(BEGIN)

    async def run(
        self, tenant: str, key: str, fp: str, work: Callable[[], Awaitable[ChatReply]]
    ) -> tuple[ChatReply, bool]:
        """The reply for this key (running ``work`` only the first time) and whether replayed."""
        claim = await self.begin(tenant, key, fp)
        if isinstance(claim, ChatReply):
            return claim, True
        try:
            reply = await work()
        except BaseException:
            await self.abandon(claim)
            raise
        await self.finish(claim, reply)
        return reply, False

    async def begin(self, tenant: str, key: str, fp: str) -> str | ChatReply:
        """Claim ``key`` for a run (its record's Redis key), or the stored reply of an earlier
        identical request."""
        named = f"{self.prefix}{tenant}\0{check_key(key)}"
        record = self.prefix + hashlib.sha1(named.encode()).hexdigest()
        got = await self._begin([record], [fp, self.pending_ttl_ms])
        if got[0] == b"other":
            raise ApiError(
                409,
                "this Idempotency-Key was used for a different request",
                type="conflict",
                param="Idempotency-Key",
            )
        if got[0] == b"done":
            return ChatReply.model_validate_json(got[2])
        return record

    async def finish(self, record: str, reply: ChatReply) -> None:
        """Store the first run's reply for ``ttl_s``."""
        await self.redis.transaction(
            [
                ("HSET", record, "state", "done", "reply", reply.model_dump_json()),
                ("EXPIRE", record, self.ttl_s),
            ]
        )

    async def abandon(self, record: str) -> None:
        """The run failed: free the key so a retry runs again."""
        await self.redis.call("DEL", record)
