"""``POST /api/chat/{agent}?mode=async`` -> 202 ``{job_id}``; ``GET /api/jobs/{id}``."""

from __future__ import annotations

import hashlib
import time

from aiohttp import web

from chatbus.contracts.chat import ChatRequest
from chatbus.contracts.jobs import ChatJob
from chatbus_gateway.caller import is_admin, tenant_of
from chatbus_gateway.deps import DEPS
from chatbus_gateway.errors import ApiError
from chatbus_gateway.jobs import JobStore, created_ms, new_job_id
from chatbus_gateway.pipeline import PIPELINE

JOBS = web.AppKey("chatbus_gateway_jobs", JobStore)


async def submit_job(
    request: web.Request, req: ChatRequest, callback_url: str | None
) -> web.Response:
    deps = request.app[DEPS]
    store = request.app[JOBS]
    job_id = new_job_id()
    # Idempotency-Key: the same key (per tenant) names the same job, queued once.
    slot = idempotency_slot(request, deps.settings.redis_prefix, req.tenant_id)
    if slot is not None:
        ttl = deps.settings.job_ttl_s
        if not await store.redis.set(slot, job_id, nx=True, ex=ttl):
            first = await store.redis.get(slot)
            if first is not None:
                job_first = first.decode() if isinstance(first, bytes) else str(first)
                return accepted(job_first, req.request_id, replayed=True)
    await request.app[PIPELINE].admit(request, req)
    job = ChatJob(job_id=job_id, request=req, callback_url=callback_url, created_at=time.time())
    await store.create(job)
    subject = ChatJob.subject_for(req.agent, deps.settings.jobs_subject)
    try:
        if not deps.bus.connected:
            raise ApiError(503, "the message bus is unavailable, try again", type="unavailable")
        await deps.bus.js_publish(job, subject, msg_id=job.job_id)
    except Exception as e:
        await store.redis.delete(store.key(job.job_id), *([slot] if slot else []))
        if isinstance(e, ApiError):
            raise
        raise ApiError(503, "the job queue is unavailable, try again", type="unavailable") from e
    return accepted(job.job_id, req.request_id)


def idempotency_slot(request: web.Request, prefix: str, tenant_id: str) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if not key:
        return None
    return f"{prefix}jobkey:{tenant_id}:{hashlib.sha256(key.encode()).hexdigest()}"


def accepted(job_id: str, request_id: str, *, replayed: bool = False) -> web.Response:
    headers = {"Location": f"/api/jobs/{job_id}", "X-Request-Id": request_id}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(
        {"job_id": job_id, "status": "queued", "request_id": request_id},
        status=202,
        headers=headers,
    )


async def get_job(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    job_id = request.match_info["job_id"]
    record = await request.app[JOBS].get(job_id) if len(job_id) <= 100 else None
    if record is None:
        born = created_ms(job_id)
        if born is not None and born / 1000 + deps.settings.job_ttl_s < time.time():
            raise ApiError(410, f"job {job_id} expired", type="expired")
        raise ApiError(404, f"no job {job_id[:100]!r}", type="not_found")
    if record.pop("tenant") != tenant_of(request) and not is_admin(request):
        raise ApiError(404, f"no job {job_id!r}", type="not_found")
    return web.json_response(record)


def setup_job_routes(app: web.Application, store: JobStore) -> None:
    app[JOBS] = store
    app.router.add_get("/api/jobs/{job_id}", get_job)
