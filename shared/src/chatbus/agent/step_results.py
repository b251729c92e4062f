"""Model answers kept per request and step, so a retried or redelivered message pays once.

When an agent instance dies after its model call completed, or the gateway sends a request
again because the instance working on it stopped beating, or JetStream redelivers a job, the
next attempt carries the same request id: each of its steps (model calls, numbered from 0)
first looks here and reuses what an earlier attempt got, instead of calling and paying again.
Entries live at least as long as the message's deadline (``chatbus:{tenant}:llmstep:...``,
keys of the agent runtime). Redis errors make a lookup a miss and a store a no-op: this saves
money, it must never fail a chat.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import orjson

from chatbus.agent.keyspace import REDIS_PREFIX
from chatbus.agent.ports import Completion, ToolCall
from chatbus.contracts.chat import ChatRequest, Usage
from chatbus.deadline import remaining
from chatbus.redis_link import RedisLink

log = logging.getLogger("chatbus.agent.step_results")

MIN_TTL_S = 300


def step_key(req: ChatRequest, agent: str, step: int) -> str:
    return f"{REDIS_PREFIX}{req.tenant_id}:llmstep:{agent}:{req.request_id}:{step}"


def encode(done: Completion) -> bytes:
    usage = done.usage
    return orjson.dumps(
        {
            "content": done.content,
            "model": done.model,
            "usage": [usage.prompt_tokens, usage.completion_tokens] if usage else None,
            "tool_calls": [[c.id, c.name, c.arguments] for c in done.tool_calls],
            "finish_reason": done.finish_reason,
            "answered": done.answered,
        }
    )


def decode(raw: bytes) -> Completion:
    data = orjson.loads(raw)
    return Completion(
        content=data["content"],
        model=data["model"],
        usage=Usage(prompt_tokens=data["usage"][0], completion_tokens=data["usage"][1])
        if data.get("usage")
        else None,
        tool_calls=[ToolCall(id=c[0], name=c[1], arguments=c[2]) for c in data["tool_calls"]],
        finish_reason=data.get("finish_reason") or "stop",
        answered=bool(data.get("answered")),
    )


def decode_or_none(raw: object) -> Completion | None:
    if not isinstance(raw, bytes):
        return None
    try:
        return decode(raw)
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable step result ignored")
        return None


class RedisStepResults:
    """Implements ``chatbus.agent.ports.StepResults`` in Redis."""

    def __init__(self, redis: RedisLink, *, on_reuse: Callable[[str], None] | None = None) -> None:
        self.redis = redis
        self.on_reuse = on_reuse

    async def get(self, req: ChatRequest, agent: str, step: int) -> Completion | None:
        try:
            raw = await self.redis.call("GET", step_key(req, agent, step))
        except Exception as e:
            log.warning("step result lookup failed: %s", type(e).__name__)
            return None
        found = decode_or_none(raw)
        if found is not None:
            self.reused(agent, step)
        return found

    def reused(self, agent: str, step: int) -> None:
        """Count one model call not made again."""
        log.info("model call of step %d reused from an earlier attempt", step)
        if self.on_reuse is not None:
            self.on_reuse(agent)

    async def put(self, req: ChatRequest, agent: str, step: int, done: Completion) -> None:
        ttl = max(MIN_TTL_S, math.ceil(remaining(req.deadline, 0.0)) + 60)
        try:
            await self.redis.call("SET", step_key(req, agent, step), encode(done), "EX", ttl)
        except Exception as e:
            log.warning("step result not kept: %s", type(e).__name__)
