"""``Idempotency-Key``: a repeated POST gets the first answer again, with no second model call.

Claimed inside the session's turn (see ``pipeline``): a repeat of a request always waits in the
same session's queue behind it, so when the repeat's turn comes the first run has finished
(its reply is stored for ``ttl_s``: replayed) or failed (its claim removed: this one runs).
A claim still pending then belongs to a run whose gateway lost the turn (it died): this run
takes it over. Reusing a key with a different request is a 409.

Claims and replies live in the gateway's NATS KV bucket ``IDEMPOTENCY_BUCKET`` (file storage,
replicated, the bucket's TTL ``ttl_s``), as async jobs do: a Redis restart that loses its data
does not make a repeat pay for the answer again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply
from chatbus.errors import BusUnavailable
from chatbus.jetstream import ensure_kv
from chatbus_gateway.api.errors import ApiError

log = logging.getLogger("chatbus.gateway.idempotency")

# One rule for every path (sync, stream, OpenAI, async): 1 to MAX_KEY characters.
MAX_KEY = 200
# Each bucket operation waits at most this long (a stream electing a leader answers nothing).
KV_TRY_S = 2.0


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def check_key(key: str) -> str:
    """``key`` when it is a usable Idempotency-Key, else a 422."""
    if not key or len(key) > MAX_KEY:
        raise ApiError(422, f"Idempotency-Key: 1 to {MAX_KEY} characters", param="Idempotency-Key")
    return key


@dataclass(frozen=True)
class Claim:
    """A key claimed for one run: its bucket entry and the request's fingerprint."""

    slot: str
    fp: str


class Idempotency:
    def __init__(self, bus: Bus, bucket: str, ttl_s: int) -> None:
        self.bus = bus
        self.bucket = bucket
        self.ttl_s = ttl_s
        self._kv: KeyValue | None = None

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

    async def begin(self, tenant: str, key: str, fp: str) -> Claim | ChatReply:
        """Claim ``key`` for a run, or the stored reply of an earlier identical request."""
        named = f"{tenant}\0{check_key(key)}"
        claim = Claim("reply." + hashlib.sha256(named.encode()).hexdigest(), fp)
        pending = _encode(state="pending", fp=fp)
        try:
            kv = await self._open()
            while True:
                try:
                    entry = await kv.get(claim.slot)
                except nats.js.errors.KeyNotFoundError:
                    try:
                        await kv.create(claim.slot, pending)
                        return claim
                    except nats.js.errors.KeyWrongLastSequenceError:
                        continue  # created meanwhile: read it
                first = json.loads(entry.value or b"{}")
                if first.get("fp") != fp:
                    raise ApiError(
                        409,
                        "this Idempotency-Key was used for a different request",
                        type="conflict",
                        param="Idempotency-Key",
                    )
                if first.get("state") == "done":
                    return ChatReply.model_validate_json(first["reply"])
                await kv.put(claim.slot, pending)  # a run whose gateway died: taken over
                return claim
        except UNAVAILABLE as e:
            raise _unavailable(e) from e

    async def finish(self, claim: Claim, reply: ChatReply) -> None:
        """Store the first run's reply (kept ``ttl_s``, the bucket's TTL)."""
        done = _encode(state="done", fp=claim.fp, reply=reply.model_dump_json())
        try:
            await (await self._open()).put(claim.slot, done)
        except UNAVAILABLE as e:
            raise _unavailable(e) from e

    async def abandon(self, claim: Claim) -> None:
        """The run failed: free the key so a retry runs again (a claim left pending, the bucket
        unavailable, is taken over by the retry all the same)."""
        try:
            await (await self._open()).purge(claim.slot)
        except UNAVAILABLE as e:
            log.warning("idempotency claim not freed: %s", type(e).__name__)

    async def _open(self) -> KeyValue:
        if self._kv is None:
            self._kv = await ensure_kv(
                self.bus, self.bucket, ttl_s=float(self.ttl_s), timeout=KV_TRY_S
            )
        return self._kv


# What a bucket that cannot answer right now raises (NATS down or reconnecting, no leader).
UNAVAILABLE = (BusUnavailable, nats.errors.Error, nats.js.errors.Error)


def _encode(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def _unavailable(e: Exception) -> ApiError:
    return ApiError(503, "idempotency records are unavailable, try again", type="unavailable")
