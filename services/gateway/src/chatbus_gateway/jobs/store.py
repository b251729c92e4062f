"""Async job records, kept in the gateway's NATS KV bucket (file storage, replicated).

A job exists once its record is written here, before the 202: a Redis flush or restart loses
nothing of it. The record holds the job's state (``queued``, ``waiting`` for an agent
instance, ``running``, ``retrying``, ``done``, ``failed``, ``dead_lettered``), its attempts,
reply or error, deadline and callback outcome. Updates are compare-and-set on the key's
revision, so concurrent workers never lose each other's writes. Records expire ``ttl_s``
after their last write (the bucket's TTL). The same bucket holds the ``Idempotency-Key``
claims of async requests (``idem.<hash>`` -> job id and request fingerprint).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from chatbus.bus import Bus
from chatbus.contracts.jobs import ChatJob
from chatbus.errors import BusUnavailable
from chatbus.jetstream import ensure_kv
from chatbus_gateway.api.errors import ApiError

# How long a read or write of a record keeps being tried while JetStream cannot take it: a
# cluster electing a new stream leader after a node died answers nothing (or "no leader")
# for 4-9 s.
STORE_RETRY_S = 20.0
# Each try waits at most this long: a request that went to the dead node is not waited for
# the connection's whole 5 s.
STORE_TRY_S = 2.0
# Errors that mean "not now" rather than "no": tried again within STORE_RETRY_S.
TRANSIENT = (
    BusUnavailable,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.js.errors.NoStreamResponseError,  # the bucket's stream has no leader right now
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
)

T = TypeVar("T")


async def patiently(op: Callable[[], Awaitable[T]], wait_s: float = STORE_RETRY_S) -> T:
    """``op()``, tried again on a transient JetStream error for up to ``wait_s``."""
    give_up = time.monotonic() + wait_s
    pause = 0.1
    while True:
        try:
            return await op()
        except TRANSIENT:
            if time.monotonic() + pause > give_up:
                raise
            await asyncio.sleep(pause)  # retry pacing while the stream elects a leader
            pause = min(pause * 2, 1.0)


JOB_ID = re.compile(r"^job-([0-9a-f]{1,16})-[0-9a-f]{16}$")
# What GET /api/jobs/{id} and the callback body show; the rest is the gateway's own.
PUBLIC = (
    "job_id",
    "status",
    "agent",
    "session_id",
    "attempts",
    "created_at",
    "updated_at",
    "deadline",
    "result",
    "error",
    "callback",
)


def new_job_id() -> str:
    return f"job-{int(time.time() * 1000):x}-{secrets.token_hex(8)}"


def created_ms(job_id: str) -> int | None:
    """When the job was created (from its id), or None for anything that is not a job id."""
    m = JOB_ID.match(job_id)
    return int(m.group(1), 16) if m else None


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in PUBLIC if record.get(k) is not None}


class JobStore:
    def __init__(self, bus: Bus, bucket: str, ttl_s: int) -> None:
        self.bus = bus
        self.bucket = bucket
        self.ttl_s = ttl_s
        self._kv: KeyValue | None = None

    async def open(self) -> KeyValue:
        """The bucket, created (or updated to this TTL and replica count) on first use."""
        if self._kv is None:
            self._kv = await ensure_kv(
                self.bus, self.bucket, ttl_s=float(self.ttl_s), timeout=STORE_TRY_S
            )
        return self._kv

    async def create(self, job: ChatJob, wait_s: float = 0.0) -> None:
        """Write a new job's record, tried again for up to ``wait_s`` while the bucket cannot
        take it (a leader election)."""
        now = time.time()
        req = job.request
        record = {
            "job_id": job.job_id,
            "status": "queued",
            "tenant": req.tenant_id,
            "agent": req.agent,
            "session_id": req.session_id,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "queued_at": now,
            "deadline": req.deadline,
        }
        kv, value, tries = await self.open(), json.dumps(record).encode(), 0

        async def write() -> None:
            nonlocal tries
            tries += 1
            try:
                await kv.create(job.job_id, value)
            except nats.js.errors.KeyWrongLastSequenceError:
                if tries == 1:  # job ids are unique: only a try of ours can have written it
                    raise

        await patiently(write, wait_s)

    async def get(self, job_id: str, wait_s: float = STORE_RETRY_S) -> dict[str, Any] | None:
        """The full record (``tenant`` and internal fields included), None when there is none;
        tried again for up to ``wait_s`` while the bucket cannot answer."""
        if created_ms(job_id) is None:
            return None
        kv = await self.open()
        try:
            entry = await patiently(lambda: kv.get(job_id), wait_s)
        except nats.js.errors.KeyNotFoundError:
            return None
        return dict(json.loads(entry.value or b"{}")) if entry.value else None

    async def update(
        self, job_id: str, change: Callable[[dict[str, Any]], bool | None]
    ) -> dict[str, Any] | None:
        """Apply ``change`` to the record (compare-and-set, retried on a concurrent write).

        ``change`` edits the dict in place; returning False leaves the record as it was. An
        expired (missing) record is not brought back: returns None.
        """
        kv = await self.open()
        give_up = time.monotonic() + STORE_RETRY_S
        pause = 0.1
        while True:
            try:
                entry = await kv.get(job_id)
                if not entry.value:
                    return None
                record = dict(json.loads(entry.value))
                if change(record) is False:
                    return record
                record["updated_at"] = time.time()
                await kv.update(job_id, json.dumps(record).encode(), last=entry.revision)
                return record
            except nats.js.errors.KeyNotFoundError:
                return None
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # a concurrent write (or our own, answered too late): read it again
            except TRANSIENT:
                # A reply already on its way must not be lost to a leader election: the record
                # is the only place a job's answer is kept.
                if time.monotonic() + pause > give_up:
                    raise
                await asyncio.sleep(pause)  # retry pacing while the stream elects a leader
                pause = min(pause * 2, 1.0)

    async def set(self, job_id: str, **fields: Any) -> dict[str, Any] | None:
        return await self.update(job_id, lambda r: r.update(fields))

    async def start_attempt(self, job_id: str) -> int:
        def start(r: dict[str, Any]) -> None:
            r["attempts"] = int(r.get("attempts", 0)) + 1
            r["status"] = "running"

        record = await self.update(job_id, start)
        return int(record["attempts"]) if record else 0

    async def requeue(self, job_id: str, deadline_s: float) -> None:
        """A re-driven job starts afresh: attempts from zero, a new deadline ``deadline_s``
        from now, its callback sent again."""

        def reset(r: dict[str, Any]) -> None:
            now = time.time()
            r.update(status="queued", attempts=0, waits=0, queued_at=now, deadline=now + deadline_s)
            for field in ("callback_sent", "callback"):
                r.pop(field, None)

        await self.update(job_id, reset)

    async def claim_callback(self, job_id: str) -> bool:
        """True exactly once per run of the job: whoever gets it sends the callback."""
        claimed = False

        def claim(r: dict[str, Any]) -> bool:
            nonlocal claimed
            claimed = not r.get("callback_sent")
            r["callback_sent"] = True
            return claimed

        await self.update(job_id, claim)
        return claimed

    async def delete(self, job_id: str) -> None:
        await (await self.open()).purge(job_id)

    # -- Idempotency-Key of async requests ----------------------------------------------------

    @staticmethod
    def key_slot(tenant: str, key: str) -> str:
        return "idem." + hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()

    async def claim_key(self, tenant: str, key: str, job_id: str, fp: str) -> str | None:
        """Claim ``key`` for ``job_id``: None when claimed now, else the job it already names.

        A key already used with another request (fingerprint) is a 409.
        """
        slot = self.key_slot(tenant, key)
        value = json.dumps({"job_id": job_id, "fp": fp}).encode()
        kv = await self.open()
        while True:
            try:
                await kv.create(slot, value)
                return None
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            try:
                first = json.loads((await kv.get(slot)).value or b"{}")
            except nats.js.errors.KeyNotFoundError:
                continue  # released meanwhile: try again
            if first.get("fp") != fp:
                raise ApiError(
                    409,
                    "this Idempotency-Key was used for a different request",
                    type="conflict",
                    param="Idempotency-Key",
                )
            return str(first["job_id"])

    async def release_key(self, tenant: str, key: str) -> None:
        await (await self.open()).purge(self.key_slot(tenant, key))
