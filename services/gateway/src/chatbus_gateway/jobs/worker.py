"""Async jobs: the worker (in every gateway process) that answers them from JetStream.

A job is accepted once its record is in the jobs KV bucket (:mod:`.store`) and its message
on the jobs work queue (both JetStream: file storage, replicated on a cluster). Its deadline
(``job_deadline_s`` after acceptance) travels in ``ChatRequest.deadline``; the worker asks the
agent within it, each attempt with its own deadline of at most ``request_timeout_s`` (and no
later than the job's), carried to the agent so it stops when the attempt is given up.

- No instance of the agent is running (NATS answers "no responders" at once): the job waits,
  asked again every ``job_agent_poll_s`` at most, without counting an attempt and without
  holding a worker slot, until ``job_agent_wait_max_s`` after it was accepted or its deadline
  (``job_deadline_s``), whichever comes first. Then it is dead-lettered.
- The agent is busy, slow or its model failed: retried with ``job_backoff_s``; after
  ``job_max_deliver`` attempts (or past its deadline) it is parked on the dead-letter stream
  and its record says ``dead_lettered`` until re-driven.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from nats.js import api

from chatbus.bus import Bus
from chatbus.contracts.jobs import ChatJob, JobCallback
from chatbus.errors import NoResponders
from chatbus.jetstream import ConsumerSpec, Defer, Park, consume, ensure_dlq, ensure_stream
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.schemas import ChatOut
from chatbus_gateway.flow.pipeline import ChatPipeline
from chatbus_gateway.jobs.callbacks import CallbackSender
from chatbus_gateway.jobs.store import STORE_RETRY_S, TRANSIENT, JobStore, patiently
from chatbus_gateway.settings import GatewaySettings

log = logging.getLogger("chatbus.gateway.jobs")

# Failures worth another attempt: the agent is busy, slow, or its model failed.
RETRYABLE = {404, 429, 502, 503, 504}
JOB_ACK_WAIT_S = 6.0


class JobWorker:
    def __init__(
        self,
        store: JobStore,
        pipeline: ChatPipeline,
        bus: Bus,
        settings: GatewaySettings,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.bus = bus
        self.s = settings
        self.subject = settings.callbacks_subject

    async def handle(self, job: ChatJob) -> None:
        try:
            await self._run(job)
        except TRANSIENT as e:
            # The job store could not be read or written even after STORE_RETRY_S (a cluster
            # without a leader for longer): soon again, not counted as a failed attempt. A
            # reply already received is not paid again: its model calls are reused.
            raise Defer(f"job {job.job_id}: job store unavailable ({type(e).__name__})", 1.0) from e

    async def _run(self, job: ChatJob) -> None:
        rec = await self.store.get(job.job_id)
        if rec is None:
            log.warning("job %s has no record (removed or expired): not run", job.job_id)
            return
        if rec["status"] in ("done", "failed"):
            return  # a duplicate delivery: answered once already
        now = time.time()
        # The record's deadline (a re-drive renews it), else the one the message carries.
        deadline = float(rec.get("deadline") or job.request.deadline or now)
        if now >= deadline:
            await self._give_up(job, ApiError(504, "the job's deadline passed", type="timeout"))
        attempts = await self.store.start_attempt(job.job_id)
        # Each attempt carries its own deadline, within the job's: the agent stops working on
        # an attempt this worker no longer waits for.
        attempt = min(deadline, now + self.s.request_timeout_s)
        try:
            reply = await self.pipeline.answer(job.request.model_copy(update={"deadline": attempt}))
        except ApiError as e:
            if isinstance(e.__cause__, NoResponders):
                await self._wait_for_agent(job, rec, deadline, e)
            if e.status not in RETRYABLE:
                await self.store.set(job.job_id, status="failed", error=e.body()["error"])
                await self.callback(job)
                return
            if attempts >= self.s.job_max_deliver or time.time() >= deadline:
                await self._give_up(job, e)
            await self.store.set(job.job_id, status="retrying", error=e.body()["error"])
            raise Defer(f"job {job.job_id}: {e.message}") from e
        result = ChatOut.of(reply, reply.request_id)
        await self.store.set(job.job_id, status="done", result=result, error=None)
        await self.callback(job)

    async def _wait_for_agent(
        self, job: ChatJob, rec: dict[str, Any], deadline: float, e: ApiError
    ) -> None:
        """No instance of the agent runs: ask again soon, not counted as an attempt."""
        since = float(rec.get("queued_at") or rec["created_at"])
        until = min(deadline, since + self.s.job_agent_wait_max_s)
        waits = int(rec.get("waits", 0)) + 1
        give_up = time.time() >= until

        def waiting(r: dict[str, Any]) -> None:
            status = "dead_lettered" if give_up else "waiting"
            r.update(status=status, error=e.body()["error"], waits=waits)
            r["attempts"] = max(0, int(r.get("attempts", 1)) - 1)

        await self.store.update(job.job_id, waiting)
        if give_up:
            await self.callback(job)
            raise Park(f"job {job.job_id}: {e.message}")
        delay = min(self.s.job_agent_poll_s, 0.25 * 2 ** min(waits - 1, 8))
        raise Defer(f"job {job.job_id}: no instance of agent {job.request.agent}", delay)

    async def _give_up(self, job: ChatJob, e: ApiError) -> None:
        await self.store.set(job.job_id, status="dead_lettered", error=e.body()["error"])
        await self.callback(job)
        raise Park(f"job {job.job_id}: {e.message}")

    async def callback(self, job: ChatJob) -> None:
        """Queue the job's callback (once per run of the job); :class:`CallbackSender` sends it."""
        if not job.callback_url:
            return
        if not await self.store.claim_callback(job.job_id):
            return
        queued = JobCallback(job_id=job.job_id, url=job.callback_url)
        try:
            await patiently(lambda: self.bus.js_publish(queued, self.subject))
        except Exception:
            # Not queued: un-claim it, so the job's next delivery sends it.
            await self.store.set(job.job_id, callback_sent=False)
            raise


async def start_worker(
    bus: Bus, settings: GatewaySettings, worker: JobWorker, sender: CallbackSender
) -> None:
    """Create the jobs work queue, the callbacks queue and the dead-letter stream, and consume
    both queues in the background."""
    s = settings
    queue: dict[str, Any] = {
        "retention": api.RetentionPolicy.WORK_QUEUE,
        "max_age": float(s.job_ttl_s),
    }
    await ensure_stream(bus, s.jobs_stream, [f"{s.jobs_subject}.>"], **queue)
    await ensure_stream(bus, s.callbacks_stream, [worker.subject], **queue)
    await ensure_dlq(bus)
    spec = ConsumerSpec(
        stream=s.jobs_stream,
        durable=f"{s.jobs_stream}_worker",
        subject=f"{s.jobs_subject}.>",
        max_deliver=None,  # the worker counts attempts (waiting for an agent is not one)
        backoff=s.job_backoff_s,
        # Short, with in-progress beats while an attempt runs: a job whose worker or consumer
        # leader died (a gateway or NATS node killed) is delivered again within ack_wait
        # (beats every 2 s: three missed ones, a busy event loop misses one at most).
        ack_wait=JOB_ACK_WAIT_S,
        keepalive=True,
        # An attempt ends by its deadline and each store call within STORE_RETRY_S: a handler
        # still running long after that is stuck, and its job is run again.
        max_run_s=2 * s.request_timeout_s + 3 * STORE_RETRY_S,
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
