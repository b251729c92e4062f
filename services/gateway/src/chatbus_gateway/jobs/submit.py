"""Accepting an async job: ``POST /api/chat/{agent}?mode=async`` -> 202 ``{job_id}``.

A job is accepted in this order: the request's form (``Idempotency-Key`` length, a callback
URL this gateway may call: 422), the limits (429: nothing is stored), the key's claim (a
replay answers the first job's id; another body with the same key is a 409), then the job's
record and message on JetStream. Only then the 202; if storing fails, nothing is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web

from chatbus.contracts.chat import ChatRequest
from chatbus.contracts.jobs import ChatJob
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.deps import DEPS
from chatbus_gateway.flow.idempotency import check_key, fingerprint
from chatbus_gateway.flow.pipeline import PIPELINE
from chatbus_gateway.jobs.callbacks import CallbackPolicy
from chatbus_gateway.jobs.store import JobStore, new_job_id

log = logging.getLogger("chatbus.gateway.jobs")

JOBS = web.AppKey("chatbus_gateway_jobs", JobStore)
CALLBACKS = web.AppKey("chatbus_gateway_callback_policy", CallbackPolicy)
# How long a submit waits for the job store and queue to take the job (a stream's leader
# election after a NATS node died takes 4-9 s) before it answers 503.
SUBMIT_WAIT_S = 10.0


def unavailable(e: Exception) -> ApiError:
    if isinstance(e, ApiError):
        return e
    log.warning("job store unavailable: %s", type(e).__name__)
    return ApiError(503, "the job queue is unavailable, try again", type="unavailable")


async def submit_job(
    request: web.Request, req: ChatRequest, callback_url: str | None
) -> web.Response:
    deps = request.app[DEPS]
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        check_key(key)
    if callback_url:
        await request.app[CALLBACKS].check_or_422(callback_url)
    await request.app[PIPELINE].admit(request, req)
    if not deps.bus.connected:
        raise ApiError(503, "the message bus is unavailable, try again", type="unavailable")
    # Claiming the key, storing and queueing the job go together: a client that closes its
    # connection meanwhile (its handler is cancelled) leaves an accepted job, never half of one
    # (a key naming a job that was not stored); its retry with the key gets the job's id.
    return await asyncio.shield(_accept(request, req, callback_url, key))


async def _accept(
    request: web.Request, req: ChatRequest, callback_url: str | None, key: str | None
) -> web.Response:
    deps = request.app[DEPS]
    store = request.app[JOBS]
    job_id = new_job_id()
    if key is not None:
        fp = fingerprint(
            "async", req.agent, req.session_id, req.message, req.user_id or "", callback_url or ""
        )
        try:
            first = await store.claim_key(req.tenant_id, key, job_id, fp)
        except Exception as e:
            raise unavailable(e) from e
        if first is not None:
            return accepted(first, req.request_id, replayed=True)
    now = time.time()
    req = req.model_copy(update={"deadline": now + deps.settings.job_deadline_s})
    job = ChatJob(job_id=job_id, request=req, callback_url=callback_url, created_at=now)
    subject = ChatJob.subject_for(req.agent, deps.settings.jobs_subject)
    try:
        # A job queue electing a leader (a NATS node died) is waited for, a few seconds.
        await store.create(job, wait_s=SUBMIT_WAIT_S)
        await deps.bus.js_publish(
            job, subject, msg_id=job.job_id, deadline=time.time() + SUBMIT_WAIT_S
        )
    except Exception as e:
        with contextlib.suppress(Exception):
            await store.delete(job.job_id)
            if key is not None:
                await store.release_key(req.tenant_id, key)
        raise unavailable(e) from e
    return accepted(job.job_id, req.request_id)


def accepted(job_id: str, request_id: str, *, replayed: bool = False) -> web.Response:
    headers = {"Location": f"/api/jobs/{job_id}", "X-Request-Id": request_id}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(
        {"job_id": job_id, "status": "queued", "request_id": request_id},
        status=202,
        headers=headers,
    )
