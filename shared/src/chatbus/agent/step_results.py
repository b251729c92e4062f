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
from dataclasses import asdict

import orjson

from chatbus.agent.ports import Completion, ToolCall
from chatbus.contracts.chat import ChatRequest, Usage
from chatbus.deadline import remaining
from chatbus.redis_link import RedisLink

log = logging.getLogger("chatbus.agent.step_results")

MIN_TTL_S = 300


def step_key(req: ChatRequest, agent: str, step: int) -> str:
    return f"chatbus:{req.tenant_id}:llmstep:{agent}:{req.request_id}:{step}"


def encode(done: Completion) -> bytes:
    return orjson.dumps(asdict(done) | {"usage": done.usage.model_dump() if done.usage else None})


def decode(raw: bytes) -> Completion:
    data = orjson.loads(raw)
    return Completion(
        content=data["content"],
        model=data["model"],
        usage=Usage(**data["usage"]) if data.get("usage") else None,
        tool_calls=[ToolCall(**c) for c in data.get("tool_calls") or []],
        finish_reason=data.get("finish_reason") or "stop",
    )


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
        if not isinstance(raw, bytes):
            return None
        try:
            found = decode(raw)
        except (ValueError, KeyError, TypeError):
            return None
        log.info("model call of step %d reused from an earlier attempt", step)
        if self.on_reuse is not None:
            self.on_reuse(agent)
        return found

    async def put(self, req: ChatRequest, agent: str, step: int, done: Completion) -> None:
        ttl = max(MIN_TTL_S, math.ceil(remaining(req.deadline, 0.0)) + 60)
        try:
            await self.redis.call("SET", step_key(req, agent, step), encode(done), "EX", ttl)
        except Exception as e:
            log.warning("step result not kept: %s", type(e).__name__)
