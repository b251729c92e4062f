"""Retries with jittered backoff, a fallback model, and a circuit breaker per model."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatbus.agent.llm import LLMError, OnDelta
from chatbus.agent.ports import LLM, Completion

log = logging.getLogger("chatbus.agent.resilience")


@dataclass
class Breaker:
    """Opens after ``threshold`` consecutive failures; lets one call through after ``reset_s``."""

    threshold: int = 5
    reset_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    clock: Callable[[], float] = time.monotonic

    def allows(self) -> bool:
        if self.opened_at is None:
            return True
        return self.clock() - self.opened_at >= self.reset_s  # half-open: one try

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()


@dataclass
class ResilientLLM:
    """Wraps an :class:`LLM`: retries retryable errors, then tries the fallback model."""

    inner: LLM
    retries: int = 2
    base_delay_s: float = 0.2
    max_delay_s: float = 4.0
    breakers: dict[str, Breaker] = field(default_factory=dict)
    breaker_threshold: int = 5
    breaker_reset_s: float = 30.0
    on_failure: Callable[[str, LLMError], None] | None = None

    def breaker(self, model: str) -> Breaker:
        if model not in self.breakers:
            self.breakers[model] = Breaker(self.breaker_threshold, self.breaker_reset_s)
        return self.breakers[model]

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        temperature: float,
        agent: str,
        tools: list[dict[str, Any]] | None = None,
        on_delta: OnDelta | None = None,
        fallback_model: str | None = None,
    ) -> Completion:
        last: LLMError | None = None
        for candidate in [m for m in (model, fallback_model) if m]:
            breaker = self.breaker(candidate)
            if not breaker.allows():
                last = LLMError("unavailable", f"circuit open for model {candidate}")
                continue
            try:
                result = await self._with_retries(
                    messages,
                    model=candidate,
                    temperature=temperature,
                    agent=agent,
                    tools=tools,
                    on_delta=on_delta,
                )
            except LLMError as e:
                breaker.failure()
                last = e
                if self.on_failure:
                    self.on_failure(candidate, e)
                log.warning("model %s failed: %s", candidate, e.message)
                if not e.retryable and e.kind != "unavailable":
                    raise
                continue
            breaker.success()
            return result
        assert last is not None
        raise last

    async def _with_retries(self, messages: list[dict[str, Any]], **kw: Any) -> Completion:
        attempt = 0
        while True:
            try:
                return await self.inner.complete(messages, **kw)
            except LLMError as e:
                if not e.retryable or attempt >= self.retries:
                    raise
                delay = min(self.max_delay_s, self.base_delay_s * 2**attempt)
                attempt += 1
                await asyncio.sleep(random.uniform(delay / 2, delay))  # jittered backoff
