"""``run_agent(spec)``: everything an agent service does besides being itself.

Subscribes the agent's subject in a queue group (replicas share the load, no message is
handled twice), answers discovery pings, streams chunks, and wires the ports to NATS, Redis
and the LLM.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from pydantic import create_model

from chatbus.agent.events import CustomerNotes, attach_collaboration
from chatbus.agent.handler import AgentConfig, AgentDeps, answer
from chatbus.agent.history import RedisHistory
from chatbus.agent.llm import LLMError, OpenAIChat
from chatbus.agent.ports import ResponseCache
from chatbus.agent.records_service import attach_records
from chatbus.agent.resilience import ResilientLLM
from chatbus.agent.session_state import RedisSessionReader
from chatbus.agent.settings import AgentSettings
from chatbus.agent.spec import AgentSpec
from chatbus.agent.step_results import RedisStepResults
from chatbus.contracts.chat import AgentInfo, AgentPing, ChatChunk, ChatReply, ChatRequest
from chatbus.deadline import DeadlineExceeded
from chatbus.errors import RemoteError
from chatbus.metrics import Metrics
from chatbus.runtime import Runtime, run
from chatbus.telemetry import logging_context

log = logging.getLogger("chatbus.agent")


OPENAI_URL = "https://api.openai.com/v1"


def configured_llm(settings: AgentSettings) -> tuple[str, str | None] | None:
    """The model the settings name: (base URL, key), or None when they name none.

    ``OPENAI_BASE_URL`` alone: that server; ``OPENAI_API_KEY`` alone: OpenAI; neither: the
    offline model at ``OFFLINE_LLM_URL`` (compose's container, a development tool).
    """
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if settings.openai_base_url:
        return settings.openai_base_url, key
    if key:
        return OPENAI_URL, key
    if settings.offline_llm_url:
        return settings.offline_llm_url, None
    return None


NO_MODEL = (
    "no model: set OPENAI_API_KEY (OpenAI), OPENAI_BASE_URL (any OpenAI-compatible server) or "
    "OFFLINE_LLM_URL (the offline model, a development tool: `./dev up` starts it for you; "
    "alone: `./dev run python -m chatbus_dev.offline_llm 8099` and "
    "OFFLINE_LLM_URL=http://127.0.0.1:8099/v1)"
)


def llm_endpoint(settings: AgentSettings) -> tuple[str, str | None]:
    """The OpenAI-compatible base URL and key; the agent does not start without one."""
    configured = configured_llm(settings)
    if configured is None:
        raise SystemExit(f"{settings.service_name}: {NO_MODEL}")
    if configured[1] is None and configured[0] == settings.offline_llm_url:
        log.warning("answering with the OFFLINE model at %s (not a real LLM)", configured[0])
    return configured


async def build_deps(
    rt: Runtime, spec: AgentSpec, settings: AgentSettings, metrics: Metrics
) -> AgentDeps:
    base_url, key = llm_endpoint(settings)
    chat = OpenAIChat(base_url, key, timeout_s=settings.llm_timeout_s)
    rt.stack.push_async_callback(chat.close)
    if key:
        rt.redactor.add(key)

    def on_llm_failure(model: str, e: LLMError) -> None:
        metrics.llm_errors.labels(model, e.kind).inc()

    config = AgentConfig(
        model=settings.model or spec.model,
        temperature=settings.temperature if settings.temperature is not None else spec.temperature,
        history_turns=settings.history_turns,
        memory_k=settings.memory_k,
        context_budget=settings.context_budget_tokens,
        cache_enabled=settings.cache_enabled,
        max_tool_steps=settings.max_tool_steps,
    )
    if settings.cheap_model or settings.fallback_model:
        from dataclasses import replace

        spec = replace(
            spec,
            cheap_model=settings.cheap_model or spec.cheap_model,
            fallback_model=settings.fallback_model or spec.fallback_model,
        )
    reused = Counter(
        "chatbus_llm_calls_reused_total",
        "Model calls not made again: a retried or redelivered request reused an earlier result",
        ["agent"],
        registry=rt.registry,
    )
    deps = AgentDeps(
        spec=spec,
        config=config,
        llm=ResilientLLM(chat, retries=settings.llm_retries, on_failure=on_llm_failure),
        history=RedisHistory(
            rt.redis_link(),
            remembered_ttl_s=settings.memory_remembered_ttl_s if settings.memory_enabled else None,
        ),
        steps=RedisStepResults(rt.redis_link(), on_reuse=lambda a: reused.labels(a).inc()),
    )
    await attach_services(rt, deps, settings, base_url=base_url)
    return deps


async def attach_services(
    rt: Runtime, deps: AgentDeps, settings: AgentSettings, *, base_url: str
) -> None:
    """Memory, costs, response cache and token counting, each when enabled."""
    from chatbus.tokens import TokenCounter

    deps.tokens = TokenCounter()
    deps.tokens.encoding_for(deps.config.model)  # load the BPE file now, not on a message
    if settings.memory_enabled:
        from chatbus.agent.memory_imports import serve_imports
        from chatbus.memory_client import BusMemory

        if isinstance(deps.history, RedisHistory):
            serve_imports(rt.bus, deps.history)  # imported transcripts are a session's past
        deps.memory = BusMemory(
            rt.bus,
            threshold=settings.memory_threshold,
            recall_budget_s=settings.memory_recall_budget_s,
        )
    if settings.cost_enabled:
        from chatbus.cost_client import BusCosts

        costs = BusCosts(rt.bus)
        await costs.watch_budgets()
        deps.costs = costs
    if settings.cache_enabled:
        from chatbus.agent.handoff import transfer_definitions
        from chatbus.agent.response_cache import RedisResponseCache, answer_scope

        spec = deps.spec
        scope = answer_scope(
            base_url=base_url,
            temperature=deps.config.temperature,
            system_prompt=spec.system_prompt,
            tools=[t.definition() for t in spec.tools]
            + transfer_definitions(spec.id, spec.handoffs),
        )
        deps.cache = CountingCache(
            RedisResponseCache(rt.redis_link(), ttl_s=settings.cache_ttl_s, scope=scope),
            rt.metrics,
        )


class CountingCache:
    """A :class:`ResponseCache` that counts hits and misses in ``chatbus_cache_requests_total``."""

    def __init__(self, inner: ResponseCache, metrics: Metrics) -> None:
        self.inner = inner
        self.hits = metrics.cache.labels("response", "hit")
        self.misses = metrics.cache.labels("response", "miss")

    async def get(
        self, agent: str, model: str, messages: list[dict[str, Any]], *, tenant_id: str = "default"
    ) -> str | None:
        found = await self.inner.get(agent, model, messages, tenant_id=tenant_id)
        (self.misses if found is None else self.hits).inc()
        return found

    async def put(
        self,
        agent: str,
        model: str,
        messages: list[dict[str, Any]],
        reply: str,
        *,
        tenant_id: str = "default",
    ) -> None:
        await self.inner.put(agent, model, messages, reply, tenant_id=tenant_id)


def chunk_publisher(rt: Runtime, req: ChatRequest) -> Callable[[str], Awaitable[None]] | None:
    if not req.stream_inbox:
        return None
    inbox = req.stream_inbox
    index = 0

    async def publish(delta: str) -> None:
        nonlocal index
        await rt.bus.publish(
            ChatChunk(request_id=req.request_id, index=index, delta=delta, agent=req.agent), inbox
        )
        index += 1

    return publish


def make_wire(spec: AgentSpec) -> Callable[[Runtime], Awaitable[None]]:
    async def wire(rt: Runtime) -> None:
        settings = rt.settings
        assert isinstance(settings, AgentSettings)
        metrics = Metrics(rt.registry, settings.service_name)
        deps = await build_deps(rt, spec, settings, metrics)
        await attach_collaboration(rt, deps, metrics)  # handoffs, tool records, events
        await attach_records(rt, deps, settings)  # records over the bus, drafts, demo data
        notes = deps.notes if isinstance(deps.notes, CustomerNotes) else None
        deps.session = RedisSessionReader(
            rt.redis_link(),
            notes=notes,
            with_route=bool(deps.router),
            with_first_step=deps.steps is not None,
            remembered=settings.memory_enabled,
        )
        instance_id = uuid.uuid4().hex[:12]
        # Bound once: looking labels up costs a few µs a message
        latency = metrics.request_latency.labels(f"agent.{spec.id}")
        answered_ok = metrics.messages.labels(spec.id, "ok")
        recall_skipped = Counter(
            "chatbus_memory_recall_skipped_total",
            "Chats answered without long-term memory: it did not answer within its budget",
            ["agent"],
            registry=rt.registry,
        ).labels(spec.id)

        async def on_chat(req: ChatRequest) -> ChatReply:
            with logging_context(
                request_id=req.request_id,
                agent=spec.id,
                session=req.session_id,
                tenant=req.tenant_id,
            ):
                if settings.log_content:
                    log.info("message received", extra={"fields": {"content": req.message}})
                started = time.perf_counter()
                publish = chunk_publisher(rt, req)
                outcome = "ok"
                span = trace.get_current_span()
                span.set_attribute("chatbus.agent", spec.id)
                span.set_attribute("chatbus.session_id", req.session_id)
                try:
                    try:  # the bus stops the work at the deadline; each hop works within it
                        reply = await answer(req, deps, publish)
                    except DeadlineExceeded as e:
                        raise RemoteError("timeout", "no answer within the deadline") from e
                    if reply.degraded == "memory":
                        recall_skipped.inc()
                    if reply.degraded:
                        outcome = f"degraded_{reply.degraded}"
                    span.set_attributes(
                        {
                            "gen_ai.request.model": reply.model,
                            "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,
                            "gen_ai.usage.output_tokens": reply.usage.completion_tokens,
                            "chatbus.cache_hit": reply.cached,
                            "chatbus.handoff_from": reply.handoff_from or "",
                            "chatbus.degraded": reply.degraded or "",
                        }
                    )
                    return reply
                except RemoteError as e:
                    outcome = e.code
                    raise
                except asyncio.CancelledError:
                    outcome = "abandoned"  # the caller is gone: stopped, nothing written
                    raise
                finally:
                    if publish is not None and req.stream_inbox:
                        await rt.bus.publish(
                            ChatChunk(
                                request_id=req.request_id, index=-1, agent=spec.id, done=True
                            ),
                            req.stream_inbox,
                        )
                    elapsed = time.perf_counter() - started
                    if outcome == "ok":
                        answered_ok.inc()
                    else:
                        metrics.messages.labels(spec.id, outcome).inc()
                    latency.observe(elapsed)
                    log.info(
                        "answered",
                        extra={"fields": {"outcome": outcome, "ms": round(elapsed * 1000, 1)}},
                    )

        async def on_ping(ping: AgentPing) -> AgentInfo:
            return AgentInfo(
                id=spec.id,
                label=spec.label,
                description=spec.description,
                instance_id=instance_id,
                model=deps.config.model,
                status="draining" if rt.draining else "up",
            )

        await rt.bus.subscribe(
            ChatRequest.subject_for(spec.id),
            ChatRequest,
            on_chat,
            queue=f"agent.{spec.id}",
            max_in_flight=settings.max_in_flight,
        )
        await rt.bus.subscribe(AgentPing.subject, AgentPing, on_ping)
        log.info("agent %s ready (model %s)", spec.id, deps.config.model)

    return wire


def run_agent(spec: AgentSpec, port: int = 8081) -> None:
    """Entry point of an agent service: read settings once, then serve until SIGTERM.

    ``port`` and the service name are defaults; ``PORT`` and ``SERVICE_NAME`` override them.
    """
    settings_cls = create_model(
        f"{spec.id.title()}Settings",
        __base__=AgentSettings,
        service_name=(str, f"agent-{spec.id}"),
        port=(int, port),
    )
    run(settings_cls(), make_wire(spec))
