"""Replies cached in Redis: the same question to the same agent and model is paid for once.

The key is the sha256 of the tenant, agent, model, the cache's *scope* and the canonical JSON of
the final prompt (the messages exactly as they would go to the LLM, after history and memory
were added). The scope (:func:`answer_scope`) is everything else that changes an answer: the
provider's base URL, the temperature, the agent's system prompt and the version of its tools, so
switching model, provider, prompt or tools never serves an answer the old setup gave. Any
difference in the prompt, including history, is a different entry; tenants never share entries.
Entries expire after ``ttl_s`` (default 5 minutes). Turning the cache off for an agent is the
agent's config (``cache_enabled``): the runtime then never calls it, or uses :class:`NoCache`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from chatbus.agent.keyspace import REDIS_PREFIX
from chatbus.redis_link import RedisError, RedisLink

log = logging.getLogger("chatbus.agent.response_cache")

MAX_REPLY_BYTES = 256 * 1024


def _digest(value: Any) -> str:
    canonical = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_key(
    tenant_id: str, agent: str, model: str, messages: list[dict[str, Any]], scope: str = ""
) -> str:
    """sha256 hex of what makes two prompts the same."""
    return _digest([tenant_id, agent, model, scope, messages])


def answer_scope(
    *, base_url: str, temperature: float, system_prompt: str, tools: list[dict[str, Any]]
) -> str:
    """A digest of what, besides the model and the prompt, decides an agent's answers.

    ``base_url`` names the provider (the offline model, OpenAI, an Ollama server ...);
    ``tools`` are the tool definitions the LLM is offered (their names, descriptions and
    schemas are the tools' version).
    """
    return _digest(
        {
            "base_url": base_url.rstrip("/"),
            "temperature": temperature,
            "system_prompt": system_prompt,
            "tools": tools,
        }
    )


class RedisResponseCache:
    """Implements ``chatbus.agent.ports.ResponseCache`` on Redis with a TTL per entry.

    Redis errors and lookups slower than ``timeout_s`` are logged and treated as a miss (get)
    or ignored (put): the cache saves money, it must never fail or stall a chat.
    """

    def __init__(
        self,
        redis: RedisLink,
        ttl_s: float = 300,
        prefix: str = f"{REDIS_PREFIX}cache:resp:",
        *,
        timeout_s: float = 0.5,
        scope: str = "",
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"cache ttl must be > 0 seconds, got {ttl_s}")
        self.redis = redis
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.scope = scope  # see answer_scope(): entries of another setup never match

    def key(self, agent: str, model: str, messages: list[dict[str, Any]], tenant_id: str) -> str:
        return self.prefix + cache_key(tenant_id, agent, model, messages, self.scope)

    async def get(
        self,
        agent: str,
        model: str,
        messages: list[dict[str, Any]],
        *,
        tenant_id: str = "default",
    ) -> str | None:
        """The cached reply for this exact prompt, or None."""
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self.redis.call("GET", self.key(agent, model, messages, tenant_id))
        except (RedisError, TimeoutError) as e:
            log.warning("response cache unavailable (miss): %s", e)
            return None
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def put(
        self,
        agent: str,
        model: str,
        messages: list[dict[str, Any]],
        reply: str,
        *,
        tenant_id: str = "default",
    ) -> None:
        """Remember ``reply`` for this exact prompt for ``ttl_s`` seconds (empty replies not)."""
        data = reply.encode()
        if not data or len(data) > MAX_REPLY_BYTES:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.call(
                    "SET", self.key(agent, model, messages, tenant_id), data, "PX", self.ttl_ms
                )
        except (RedisError, TimeoutError) as e:
            log.warning("response cache unavailable (not stored): %s", e)


class NoCache:
    """A ``ResponseCache`` that never hits (an agent with the cache turned off)."""

    async def get(
        self,
        agent: str,
        model: str,
        messages: list[dict[str, Any]],
        *,
        tenant_id: str = "default",
    ) -> str | None:
        return None

    async def put(
        self,
        agent: str,
        model: str,
        messages: list[dict[str, Any]],
        reply: str,
        *,
        tenant_id: str = "default",
    ) -> None:
        return None
