"""Wiring: build the gateway's dependencies once and install its routes and middlewares."""

from __future__ import annotations

import logging

from aiohttp import web

from chatbus.cost_client import BusCosts
from chatbus.forget import ensure_forget_stream, serve_forget
from chatbus.memory_client import BusMemory
from chatbus.records_client import BusRecords
from chatbus.runtime import Runtime
from chatbus_gateway.api.middleware import drain_middleware, error_middleware
from chatbus_gateway.api.openapi import setup_openapi
from chatbus_gateway.api.request_ids import echo_request_id
from chatbus_gateway.auth.keys import KeyStore
from chatbus_gateway.auth.middleware import auth_middleware
from chatbus_gateway.deps import DEPS, GatewayDeps
from chatbus_gateway.flow.idempotency import Idempotency
from chatbus_gateway.flow.limits_http import AuthFailures, HttpLimits, add_rate_headers
from chatbus_gateway.flow.order import SessionOrder
from chatbus_gateway.flow.pipeline import PIPELINE, ChatPipeline
from chatbus_gateway.flow.ratelimit import RateLimiter
from chatbus_gateway.flow.traffic import TRAFFIC, Traffic
from chatbus_gateway.jobs.callbacks import CallbackPolicy, CallbackSender, callback_session
from chatbus_gateway.jobs.store import JobStore
from chatbus_gateway.jobs.submit import CALLBACKS, JOBS
from chatbus_gateway.jobs.worker import JobWorker, start_worker
from chatbus_gateway.peers.forget import ForgetDesk, gateway_forgetter
from chatbus_gateway.routes.admin import setup_admin_routes
from chatbus_gateway.routes.agents import setup_agent_routes
from chatbus_gateway.routes.budgets import setup_budget_routes
from chatbus_gateway.routes.chat import setup_chat_routes
from chatbus_gateway.routes.forget import setup_forget_routes
from chatbus_gateway.routes.jobs import setup_job_routes
from chatbus_gateway.routes.memory import Bounds, setup_memory_routes
from chatbus_gateway.routes.openai import setup_openai_routes
from chatbus_gateway.routes.profile import setup_profile_routes
from chatbus_gateway.routes.records import setup_records_routes
from chatbus_gateway.routes.stats import setup_stats_routes
from chatbus_gateway.routes.usage import setup_usage_routes
from chatbus_gateway.routes.web import setup_web_routes
from chatbus_gateway.settings import GatewaySettings

log = logging.getLogger("chatbus.gateway")


def setup_gateway(app: web.Application, deps: GatewayDeps) -> web.Application:
    """Install the gateway on ``app`` (the runtime's app, which already serves probes)."""
    s = deps.settings
    limits = HttpLimits(RateLimiter(deps.link, s.redis_prefix), s, deps.metrics)
    order = SessionOrder(deps.link, deps.bus, s.redis_prefix, s.session_turn_timeout_s)
    idem = Idempotency(deps.bus, s.idempotency_bucket, s.idempotency_ttl_s)
    keys = KeyStore(deps.link, s.redis_prefix, s.key_cache_s)
    app[DEPS] = deps
    app[PIPELINE] = ChatPipeline(deps, limits, order, idem)
    app[TRAFFIC] = traffic = Traffic()
    # Outermost first: errors -> refuse while draining -> who is calling -> the dashboard's
    # traffic counts -> rate limits.
    app.middlewares.append(error_middleware(deps.metrics))
    app.middlewares.append(drain_middleware(deps.is_draining, deps.inflight))
    app.middlewares.append(auth_middleware(s, keys, AuthFailures(limits)))
    app.middlewares.append(traffic.middleware())
    app.middlewares.append(limits.middleware())
    app.on_response_prepare.append(add_rate_headers)
    app.on_response_prepare.append(echo_request_id)
    setup_chat_routes(app)
    setup_agent_routes(app)
    setup_openai_routes(app)
    policy = CallbackPolicy(s.callback_allow_hosts, https_only=s.app_env == "production")
    setup_job_routes(app, JobStore(deps.bus, s.jobs_bucket, s.job_ttl_s), policy)
    setup_admin_routes(app)
    setup_stats_routes(app)
    setup_openapi(app, s.max_message_chars, s.auth_on)
    return app


def create_app(settings: GatewaySettings, deps: GatewayDeps) -> web.Application:
    """A fresh application serving the gateway API (no probes: ``serve`` adds those)."""
    return setup_gateway(web.Application(), deps)


async def wire(rt: Runtime) -> None:
    settings = rt.settings
    assert isinstance(settings, GatewaySettings)
    deps = GatewayDeps(
        settings=settings,
        bus=rt.bus,
        link=rt.redis_link(),
        metrics=rt.metrics,
        is_draining=lambda: rt.draining,
    )
    app = setup_gateway(rt.http, deps)
    deps.http = http = callback_session(app[CALLBACKS], settings.callback_timeout_s)
    rt.stack.push_async_callback(http.close)
    costs = BusCosts(rt.bus)
    setup_usage_routes(app, costs)
    setup_budget_routes(app, costs)
    bounds = Bounds(settings.max_body_bytes, settings.max_message_chars)
    setup_memory_routes(app, BusMemory(rt.bus), bounds)
    await ensure_forget_stream(rt.bus)  # the gateway's stream; a consumer per declared owner
    setup_forget_routes(app, ForgetDesk(rt.bus, settings.forget_wait_s))
    serve_forget(rt.bus, "gateway", gateway_forgetter(app[PIPELINE].order, deps.link))
    setup_profile_routes(app, BusMemory(rt.bus))
    setup_records_routes(app, BusRecords(rt.bus))
    setup_web_routes(app)
    await app[JOBS].open()  # the jobs bucket exists before the first job is accepted
    worker = JobWorker(app[JOBS], app[PIPELINE], rt.bus, settings)
    secret = settings.callback_secret.get_secret_value() if settings.callback_secret else None
    sender = CallbackSender(app[JOBS], http, secret, app[CALLBACKS])
    await start_worker(rt.bus, settings, worker, sender)

    async def finish_in_flight() -> None:
        # bus.drain() waits for this before closing the connection in-flight requests use.
        await rt.bus.closing.wait()
        log.info("draining: %d requests in flight", deps.inflight.count)
        await deps.inflight.idle.wait()

    rt.bus.spawn(finish_in_flight())
