"""``GET /api/jobs/{job_id}``: an async job's status and reply (the caller's tenant only)."""

from __future__ import annotations

import time

from aiohttp import web

from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.route_table import Answer, Route, add_routes, path
from chatbus_gateway.api.schemas import JobOut
from chatbus_gateway.auth.caller import is_admin, tenant_of
from chatbus_gateway.deps import DEPS
from chatbus_gateway.jobs.callbacks import CallbackPolicy
from chatbus_gateway.jobs.store import JobStore, created_ms, public
from chatbus_gateway.jobs.submit import CALLBACKS, JOBS, unavailable

# Waits this long for a job bucket electing a leader (a NATS node died), then answers 503.
READ_WAIT_S = 3.0


async def get_job(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    job_id = request.match_info["job_id"]
    try:
        record = await request.app[JOBS].get(job_id, wait_s=READ_WAIT_S)
    except Exception as e:
        raise unavailable(e) from e
    if record is None:
        born = created_ms(job_id)
        if born is not None and born / 1000 + deps.settings.job_ttl_s < time.time():
            raise ApiError(410, f"job {job_id} expired", type="expired")
        raise ApiError(404, f"no job {job_id[:100]!r}", type="not_found")
    if record.get("tenant") != tenant_of(request) and not is_admin(request):
        raise ApiError(404, f"no job {job_id!r}", type="not_found")
    return web.json_response(public(record))


def setup_job_routes(app: web.Application, store: JobStore, policy: CallbackPolicy) -> None:
    app[JOBS] = store
    app[CALLBACKS] = policy
    job_id = path("job_id", {"type": "string", "maxLength": 100})
    add_routes(
        app,
        [
            Route(
                "GET",
                "/api/jobs/{job_id}",
                get_job,
                "An async job's status and reply",
                {200: Answer("The job", JobOut)},
                (404, 410),
                params=(job_id,),
            )
        ],
    )
