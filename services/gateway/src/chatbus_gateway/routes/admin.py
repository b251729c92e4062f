"""Admin: the dead-letter stream. ``GET /api/admin/dead-letters``, ``POST .../{seq}/redrive``.

The listing is paged: ``limit`` (1-1000, default 100) entries with a sequence above ``after``
(default 0), and ``next_after`` to pass as ``after`` for the next page (null at the end).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from chatbus.contracts.jobs import ChatJob, JobCallback
from chatbus.dead_letters import get_dead_letter, page_dead_letters, redrive
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.route_table import MAX_SEQ, Answer, Route, add_routes, int_query, path
from chatbus_gateway.api.schemas import DeadLettersOut, RedriveOut
from chatbus_gateway.auth.middleware import require_admin
from chatbus_gateway.deps import DEPS
from chatbus_gateway.jobs.submit import JOBS

LIMIT = int_query("limit", 1, 1000)
AFTER = int_query("after", 0, MAX_SEQ, "Entries after this seq (a page's next_after)")
SEQ = path("seq", {"type": "integer", "minimum": 1, "maximum": MAX_SEQ})


def _job(data: bytes) -> ChatJob | None:
    try:
        return ChatJob.from_bytes(data)
    except (ValidationError, ValueError):
        return None


def _job_id(data: bytes) -> str | None:
    """The job a parked message belongs to: a job itself, or one of its callbacks."""
    if job := _job(data):
        return job.job_id
    try:
        return JobCallback.from_bytes(data).job_id
    except (ValidationError, ValueError):
        return None


async def dead_letters(request: web.Request) -> web.Response:
    require_admin(request)
    limit = LIMIT.integer(request, 100)
    after = AFTER.integer(request, 0)
    page = await page_dead_letters(request.app[DEPS].bus, after=after, limit=limit)
    out = []
    for p in page.items:
        job = _job(p.data)
        out.append(
            {
                "seq": p.seq,
                "subject": p.subject,
                "reason": p.reason,
                "deliveries": p.deliveries,
                "consumer": p.consumer,
                "job_id": _job_id(p.data),
                "agent": job.request.agent if job else None,
            }
        )
    return web.json_response({"dead_letters": out, "next_after": page.next_after})


async def redrive_one(request: web.Request) -> web.Response:
    require_admin(request)
    seq = SEQ.integer(request)
    bus = request.app[DEPS].bus
    parked = await get_dead_letter(bus, seq)
    if parked is None:
        raise ApiError(404, f"no dead letter {seq}", type="not_found")
    job = _job(parked.data)
    if job is not None:  # a fresh start: the worker counts attempts again from zero
        await request.app[JOBS].requeue(job.job_id, request.app[DEPS].settings.job_deadline_s)
    subject = await redrive(bus, seq)
    return web.json_response({"seq": seq, "subject": subject, "job_id": _job_id(parked.data)})


def setup_admin_routes(app: web.Application) -> None:
    add_routes(
        app,
        [
            Route(
                "GET",
                "/api/admin/dead-letters",
                dead_letters,
                "Messages parked after their last delivery (admin)",
                {200: Answer("Parked", DeadLettersOut)},
                (403, 422),
                params=(LIMIT, AFTER),
            ),
            Route(
                "POST",
                "/api/admin/dead-letters/{seq}/redrive",
                redrive_one,
                "Send a parked message back to its queue (admin)",
                {200: Answer("Re-driven", RedriveOut)},
                (403, 404),
                params=(SEQ,),
            ),
        ],
    )
