"""``Idempotency-Key``: a repeated POST gets the first answer again, with no second model call.

The first request with a key marks it pending in Redis and runs; its reply is stored for
``ttl_s``. A duplicate arriving meanwhile waits for it (signalled over NATS) and gets the same
reply. A failed first request removes the mark, so a retry runs again. Reusing a key with a
different request is a 409.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply
from chatbus.redis_link import RedisLink
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.flow import signals

# One rule for every path (sync, stream, OpenAI, async): 1 to MAX_KEY characters.
MAX_KEY = 200

# KEYS: record. ARGV: fingerprint, pending_ttl_ms. Returns {"new"} or {state, fingerprint, reply}.
BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
return redis.call('HMGET', KEYS[1], 'state', 'fp', 'reply')
"""


@dataclass(frozen=True)
class Claim:
    """A key claimed by the first request that carries it."""

    record: str  # the Redis hash holding state, fingerprint and reply
    topic: str  # where waiting duplicates are signalled


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def check_key(key: str) -> str:
    """``key`` when it is a usable Idempotency-Key, else a 422."""
    if not key or len(key) > MAX_KEY:
        raise ApiError(422, f"Idempotency-Key: 1 to {MAX_KEY} characters", param="Idempotency-Key")
    return key


class Idempotency:
    def __init__(
        self, redis: RedisLink, bus: Bus, prefix: str, ttl_s: int, pending_ttl_s: float
    ) -> None:
        self.redis = redis
        self.bus = bus
        self.prefix = f"{prefix}idem:"
        self.ttl_s = ttl_s
        self.pending_ttl_s = pending_ttl_s
        self._begin = redis.script(BEGIN)

    async def run(
        self,
        tenant: str,
        key: str,
        fp: str,
        work: Callable[[], Awaitable[ChatReply]],
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

    async def begin(self, tenant: str, key: str, fp: str) -> Claim | ChatReply:
        """Claim ``key`` for a first run, or the stored reply of an earlier identical request
        (waiting for it while it is still running)."""
        check_key(key)
        topic = hashlib.sha1(f"{self.prefix}{tenant}\0{key}".encode()).hexdigest()
        record = f"{self.prefix}{topic}"
        while True:
            got = await self._begin([record], [fp, int(self.pending_ttl_s * 1000)])
            if got[0] == b"new":
                return Claim(record, topic)
            state, stored_fp, reply = got
            if stored_fp is not None and stored_fp.decode() != fp:
                raise ApiError(
                    409,
                    "this Idempotency-Key was used for a different request",
                    type="conflict",
                    param="Idempotency-Key",
                )
            if state == b"done" and reply is not None:
                return ChatReply.model_validate_json(reply)
            await self._wait(record, topic)

    async def finish(self, claim: Claim, reply: ChatReply) -> None:
        """Store the first run's reply for ``ttl_s`` and wake the duplicates waiting for it."""
        await self.redis.transaction(
            [
                ("HSET", claim.record, "state", "done", "reply", reply.model_dump_json()),
                ("EXPIRE", claim.record, self.ttl_s),
            ]
        )
        await signals.notify(self.bus, claim.topic)

    async def abandon(self, claim: Claim) -> None:
        """The first run failed: free the key so a retry runs again."""
        await self.redis.call("DEL", claim.record)
        await signals.notify(self.bus, claim.topic)

    async def _wait(self, record: str, topic: str) -> None:
        async def settled() -> bool | None:
            state = await self.redis.call("HGET", record, "state")
            return None if state == b"pending" else True

        if await signals.wait_until(self.bus, topic, settled, self.pending_ttl_s) is None:
            raise ApiError(
                409,
                "a request with this Idempotency-Key is still in progress",
                type="conflict",
                param="Idempotency-Key",
                headers={"Retry-After": "1"},
            )
