"""Async jobs: their records in Redis, and the worker that answers them from JetStream.

A job is queued on a JetStream work queue. The worker (in every gateway process) asks the
agent in the session's turn. When the agent is missing, slow or its model fails, the job is
retried with backoff; after ``job_max_deliver`` deliveries it is parked on the dead-letter
stream (``chatbus.jetstream``) and its record says ``dead_lettered`` until re-driven. A record
lives ``job_ttl_s``; its id carries its creation time, so an expired job answers 410.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any, cast

import aiohttp
import redis.asyncio as aioredis
from nats.js import api

from chatbus.bus import Bus
from chatbus.contracts.jobs import ChatJob, JobCallback
from chatbus.errors import RemoteError
from chatbus.jetstream import ConsumerSpec, consume, ensure_dlq, ensure_stream
from chatbus_gateway.errors import ApiError
from chatbus_gateway.pipeline import ChatPipeline
from chatbus_gateway.schemas import ChatOut
from chatbus_gateway.settings import GatewaySettings

log = logging.getLogger("chatbus.gateway.jobs")

# Failures worth another delivery: the agent is not running, busy, slow, or its model failed.
RETRYABLE = {404, 429, 502, 503, 504}


def new_job_id() -> str:
    return f"job-{int(time.time() * 1000):x}-{secrets.token_hex(8)}"


def created_ms(job_id: str) -> int | None:
    parts = job_id.split("-")
    if len(parts) != 3 or parts[0] != "job":
        return None
    try:
        return int(parts[1], 16)
    except ValueError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class JobStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = f"{prefix}job:"
        self.ttl_s = ttl_s

    def key(self, job_id: str) -> str:
        return f"{self.prefix}{job_id}"

    async def create(self, job: ChatJob) -> None:
        now = time.time()
        req = job.request
        fields: dict[str | bytes, str | bytes | int | float] = {
            "job_id": job.job_id,
            "status": "queued",
            "tenant": req.tenant_id,
            "agent": req.agent,
            "session_id": req.session_id,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "callback_url": job.callback_url or "",
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(job.job_id), mapping=cast(Any, fields))
            pipe.expire(self.key(job.job_id), self.ttl_s)
            await pipe.execute()

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.key(job_id))
        if not raw:
            return None
        rec = {_text(k): _text(v) for k, v in raw.items()}
        out: dict[str, Any] = {
            "job_id": rec.get("job_id", job_id),
            "status": rec.get("status", "queued"),
            "agent": rec.get("agent", ""),
            "session_id": rec.get("session_id", ""),
            "attempts": int(rec.get("attempts", "0")),
            "created_at": float(rec.get("created_at", "0")),
            "updated_at": float(rec.get("updated_at", "0")),
            "tenant": rec.get("tenant", ""),
        }
        for field in ("result", "error"):
            if rec.get(field):
                out[field] = json.loads(rec[field])
        if rec.get("callback"):
            out["callback"] = rec["callback"]
        return out

    async def update(self, job_id: str, **fields: str | int | float) -> None:
        fields["updated_at"] = time.time()
        # Only while the record lives: an expired job is not brought back.
        key = self.key(job_id)
        if await self.redis.exists(key):
            await self.redis.hset(key, mapping=cast(Any, fields))

    async def start_attempt(self, job_id: str) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.key(job_id), "attempts", 1)
            pipe.hset(self.key(job_id), mapping={"status": "running", "updated_at": time.time()})
            attempts, _ = await pipe.execute()
        return int(attempts)

    async def requeue(self, job_id: str) -> None:
        """A re-driven job starts afresh: attempts from zero, its callback sent again."""
        key = self.key(job_id)
        if await self.redis.exists(key):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    key, mapping={"status": "queued", "attempts": 0, "updated_at": time.time()}
                )
                pipe.hdel(key, "callback_sent", "callback")
                await pipe.execute()

    async def claim_callback(self, job_id: str) -> bool:
        """True exactly once per job: whoever gets it sends the callback."""
        return bool(await self.redis.hsetnx(self.key(job_id), "callback_sent", "1"))


class JobWorker:
    def __init__(
        self,
        store: JobStore,
        pipeline: ChatPipeline,
        bus: Bus,
        max_deliver: int,
        callbacks_subject: str = JobCallback.subject,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.bus = bus
        self.max_deliver = max_deliver
        self.subject = callbacks_subject

    async def handle(self, job: ChatJob) -> None:
        rec = await self.store.get(job.job_id)
        if rec is None:
            log.warning("job %s expired before it ran", job.job_id)
            return
        if rec["status"] in ("done", "failed"):
            return  # a duplicate delivery: answered once already
        attempts = await self.store.start_attempt(job.job_id)
        try:
            reply = await self.pipeline.answer(job.request)
        except ApiError as e:
            retry = e.status in RETRYABLE
            last = attempts >= self.max_deliver
            status = ("dead_lettered" if last else "retrying") if retry else "failed"
            await self.store.update(job.job_id, status=status, error=json.dumps(e.body()["error"]))
            if status != "retrying":
                await self.callback(job)
            if retry:
                raise RemoteError("unavailable", f"job {job.job_id}: {e.message}") from e
            return
        result = ChatOut.of(reply, reply.request_id)
        await self.store.update(job.job_id, status="done", result=json.dumps(result), error="")
        await self.callback(job)

    async def callback(self, job: ChatJob) -> None:
        """Queue the job's callback (once per run of the job); :class:`CallbackSender` sends it."""
        if not job.callback_url:
            return
        if not await self.store.claim_callback(job.job_id):
            return
        await self.bus.js_publish(
            JobCallback(job_id=job.job_id, url=job.callback_url), self.subject
        )


RETRY_STATUSES = frozenset({408, 425, 429})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class CallbackSender:
    """POSTs a finished job's record to its callback URL until the receiver takes it.

    2xx: delivered. Any other 4xx (but 408, 425, 429): the receiver refused it, no retry.
    Network errors, timeouts, 408/425/429 and 5xx: retried on the consumer's backoff, then
    parked on the dead-letter stream (listed and re-drivable by the admin API). The outcome
    is kept on the job (``callback`` in ``GET /api/jobs/{id}``).
    """

    def __init__(self, store: JobStore, http: aiohttp.ClientSession, secret: str | None) -> None:
        self.store = store
        self.http = http
        self.secret = secret

    async def handle(self, cb: JobCallback) -> None:
        rec = await self.store.get(cb.job_id)
        if rec is None:
            log.warning("job %s expired before its callback was sent", cb.job_id)
            return
        rec.pop("tenant", None)
        body = json.dumps(rec).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "chatbus-gateway",
            "X-Chatbus-Job-Id": cb.job_id,
        }
        if self.secret:
            headers["X-Chatbus-Signature"] = signature(self.secret, int(time.time()), body)
        try:
            async with self.http.post(cb.url, data=body, headers=headers) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            await self._note(cb.job_id, f"failed: {type(e).__name__}")
            raise RemoteError("unavailable", f"callback of {cb.job_id}: {type(e).__name__}") from e
        if 200 <= status < 300:
            log.info("job %s callback delivered (%d)", cb.job_id, status)
            await self._note(cb.job_id, f"delivered ({status})")
        elif status >= 500 or status in RETRY_STATUSES:
            await self._note(cb.job_id, f"failed ({status})")
            raise RemoteError("unavailable", f"callback of {cb.job_id} answered {status}")
        else:
            log.warning("job %s callback refused by the receiver (%d)", cb.job_id, status)
            await self._note(cb.job_id, f"refused ({status})")

    async def _note(self, job_id: str, outcome: str) -> None:
        await self.store.update(job_id, callback=outcome)


async def start_worker(
    bus: Bus, settings: GatewaySettings, worker: JobWorker, sender: CallbackSender
) -> None:
    """Create the jobs work queue, the callbacks queue and the dead-letter stream, and consume
    both queues in the background."""
    s = settings
    await ensure_stream(
        bus,
        s.jobs_stream,
        [f"{s.jobs_subject}.>"],
        retention=api.RetentionPolicy.WORK_QUEUE,
        max_age=float(s.job_ttl_s),
        storage=api.StorageType.FILE,
    )
    await ensure_stream(
        bus,
        s.callbacks_stream,
        [worker.subject],
        retention=api.RetentionPolicy.WORK_QUEUE,
        max_age=float(s.job_ttl_s),
        storage=api.StorageType.FILE,
    )
    await ensure_dlq(bus)
    spec = ConsumerSpec(
        stream=s.jobs_stream,
        durable=f"{s.jobs_stream}_worker",
        subject=f"{s.jobs_subject}.>",
        max_deliver=s.job_max_deliver,
        backoff=s.job_backoff_s,
        # Longer than the longest attempt: waiting for the session's turn, then the agent.
        ack_wait=2 * s.request_timeout_s + s.session_turn_timeout_s + 5,
        concurrency=s.job_concurrency,
    )
    bus.spawn(consume(bus, spec, ChatJob, worker.handle))
    callbacks = ConsumerSpec(
        stream=s.callbacks_stream,
        durable=f"{s.callbacks_stream}_sender",
        subject=worker.subject,
        max_deliver=s.callback_max_deliver,
        backoff=s.callback_backoff_s,
        ack_wait=s.callback_timeout_s + 10,
        concurrency=s.job_concurrency,
    )
    bus.spawn(consume(bus, callbacks, JobCallback, sender.handle))
