"""The agent handler: one ChatRequest in, one ChatReply out, through the ports only."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chatbus.agent.llm import LLMError
from chatbus.agent.ports import Authorization, Costs, History, Memory, ResponseCache, Tokens
from chatbus.agent.prompt import build_messages
from chatbus.agent.resilience import ResilientLLM
from chatbus.agent.spec import AgentSpec
from chatbus.contracts.chat import ChatReply, ChatRequest, Turn, Usage
from chatbus.errors import RemoteError

log = logging.getLogger("chatbus.agent")

Publish = Callable[[str], Awaitable[None]]


@dataclass
class AgentConfig:
    """Per-deployment knobs (from the agent service's settings)."""

    model: str
    temperature: float
    history_turns: int = 10
    memory_k: int = 5
    context_budget: int = 3500
    cache_enabled: bool = True
    max_tool_steps: int = 6


@dataclass
class AgentDeps:
    spec: AgentSpec
    config: AgentConfig
    llm: ResilientLLM
    history: History
    memory: Memory | None = None
    costs: Costs | None = None
    cache: ResponseCache | None = None
    tokens: Tokens | None = None


def fit(
    deps: AgentDeps,
    system: list[dict[str, Any]],
    history: list[dict[str, Any]],
    new: dict[str, Any],
    model: str,
) -> list[dict[str, Any]]:
    """Keep the prompt within the context budget, dropping the oldest history first."""
    if deps.tokens is None:
        return [*system, *history, new]
    from chatbus.agent.prompt_budget import fit_prompt

    return fit_prompt(
        system, history, new, budget=deps.config.context_budget, model=model, tokens=deps.tokens
    )


async def answer(req: ChatRequest, deps: AgentDeps, on_delta: Publish | None = None) -> ChatReply:
    """Answer ``req``: recall, assemble the prompt, check the budget, call the LLM, remember."""
    spec, cfg = deps.spec, deps.config
    recent = await deps.history.recent(req.tenant_id, req.session_id, cfg.history_turns)
    recalled: list[Turn] = []
    if deps.memory is not None and cfg.memory_k > 0:
        recalled = await deps.memory.recall(req, k=cfg.memory_k, scope=spec.memory_scope)
    system, history, new = build_messages(spec.system_prompt, recalled, recent, req.message)
    model = cfg.model
    messages = fit(deps, system, history, new, model)

    auth = Authorization(decision="allow", model=model)
    if deps.costs is not None:
        prompt_tokens = deps.tokens.count_messages(messages, model) if deps.tokens else 0
        auth = await deps.costs.authorize(
            req, model=model, cheap_model=spec.cheap_model, prompt_tokens=prompt_tokens
        )
        if auth.decision == "deny":
            return await _finish(
                req,
                deps,
                spec.budget_reply,
                model,
                Usage(),
                auth,
                degraded="budget",
                on_delta=on_delta,
            )
        if auth.decision == "downgrade" and auth.model != model:
            model = auth.model
            messages = fit(deps, system, history, new, model)

    if deps.cache is not None and cfg.cache_enabled:
        cached = await deps.cache.get(spec.id, model, messages, tenant_id=req.tenant_id)
        if cached is not None:
            return await _finish(
                req, deps, cached, model, Usage(), auth, cached=True, on_delta=on_delta
            )

    started = time.perf_counter()
    try:
        completion = await deps.llm.complete(
            messages,
            model=model,
            temperature=cfg.temperature,
            agent=spec.id,
            on_delta=on_delta,
            fallback_model=spec.fallback_model,
        )
    except LLMError as e:
        if e.kind in {"connection", "unavailable"}:
            raise RemoteError("unavailable", e.message) from e
        raise RemoteError("upstream", e.message) from e
    log.debug("llm answered in %.1f ms", (time.perf_counter() - started) * 1000)

    counted = completion.usage is None
    usage = completion.usage or Usage(
        prompt_tokens=deps.tokens.count_messages(messages, completion.model) if deps.tokens else 0,
        completion_tokens=(
            deps.tokens.count_text(completion.content, completion.model) if deps.tokens else 0
        ),
    )
    if deps.cache is not None and cfg.cache_enabled and completion.content:
        await deps.cache.put(spec.id, model, messages, completion.content, tenant_id=req.tenant_id)
    return await _finish(
        req, deps, completion.content, completion.model, usage, auth, counted=counted
    )


async def _finish(
    req: ChatRequest,
    deps: AgentDeps,
    text: str,
    model: str,
    usage: Usage,
    auth: Authorization,
    *,
    degraded: str | None = None,
    cached: bool = False,
    counted: bool = False,
    on_delta: Publish | None = None,
) -> ChatReply:
    now = time.time()
    turns = [
        Turn(role="user", content=req.message, created_at=now, speaker=req.user_id),
        Turn(role="assistant", content=text, created_at=now, agent=deps.spec.id),
    ]
    await deps.history.append(req.tenant_id, req.session_id, turns)
    if deps.memory is not None:
        await deps.memory.remember(req, turns)
    if deps.costs is not None and degraded is None:
        await deps.costs.record(req, auth, model=model, usage=usage, cached=cached, counted=counted)
    if on_delta is not None and (cached or degraded):
        await on_delta(text)  # nothing was streamed: send the whole reply as one chunk
    return ChatReply(
        request_id=req.request_id,
        agent=deps.spec.id,
        session_id=req.session_id,
        reply=text,
        model=model,
        usage=usage,
        handoff_from=req.handoff_from,
        degraded=degraded,
        cached=cached,
    )
