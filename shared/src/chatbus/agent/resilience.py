"""Retries with jittered backoff, a fallback model and a health breaker, inside the deadline.

Every attempt gets what is left of the message's deadline (the LLM client caps it further with
``LLM_TIMEOUT_S``); a retry starts only when the backoff plus a typical answer time still fit,
so no attempt starts that cannot finish. Once the first chunk of a streamed answer has gone to
the user there is no retry and no fallback: the answer would be shown twice, so the error
(``interrupted``) goes to the user instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatbus.agent.breaker import Breaker
from chatbus.agent.llm import LLMError, OnDelta
from chatbus.agent.ports import LLM, Completion
from chatbus.deadline import remaining

log = logging.getLogger("chatbus.agent.resilience")

# What the user reads when no model can be asked (names no model: neither is the user's concern)
UNAVAILABLE = "the language model is unavailable right now; please try again shortly"


class _Deltas:
    """Passes streamed text on, remembering whether any has gone out."""

    def __init__(self, on_delta: OnDelta | None) -> None:
        self.inner = on_delta
        self.started = False

    async def __call__(self, text: str) -> None:
        self.started = True
        assert self.inner is not None
        await self.inner(text)


@dataclass
class ResilientLLM:
    """Wraps an :class:`LLM`: retries retryable errors, then tries the fallback model."""

    inner: LLM
    retries: int = 2
    base_delay_s: float = 0.2
    max_delay_s: float = 4.0
    breakers: dict[str, Breaker] = field(default_factory=dict)
    make_breaker: Callable[[], Breaker] = Breaker
    on_failure: Callable[[str, LLMError], None] | None = None
    # The least time an attempt is started with; raised by how long answers actually take.
    min_attempt_s: float = 0.5
    typical_s: dict[str, float] = field(default_factory=dict)

    def breaker(self, model: str) -> Breaker:
        if model not in self.breakers:
            self.breakers[model] = self.make_breaker()
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
        deadline: float | None = None,
        caller: str = "",
    ) -> Completion:
        """One answer for one request; ``caller`` (the session) tells callers apart."""
        deltas = _Deltas(on_delta) if on_delta is not None else None
        last: LLMError | None = None
        for candidate in [m for m in (model, fallback_model) if m]:
            # The first try needs what answers typically take; a fallback, a real chance too.
            first = last is None
            if remaining(deadline) <= self._needed(candidate, first=first):
                break
            breaker = self.breaker(candidate)
            admission = breaker.admit()
            if admission is None:
                last = LLMError("unavailable", UNAVAILABLE)
                continue
            try:
                result = await self._with_retries(
                    messages,
                    deltas,
                    deadline,
                    model=candidate,
                    temperature=temperature,
                    agent=agent,
                    tools=tools,
                )
            except LLMError as e:
                breaker.record(admission, failed=e.kind != "client", caller=caller)
                if self.on_failure:
                    self.on_failure(candidate, e)
                log.warning("model %s failed: %s", candidate, e.message)
                if deltas is not None and deltas.started:
                    raise LLMError(
                        "interrupted", "the model's answer broke off; please ask again"
                    ) from e
                if not e.retryable and e.kind != "unavailable":
                    raise
                last = e
                continue
            except BaseException:
                breaker.abandon(admission)
                raise
            breaker.record(admission, failed=False, caller=caller)
            return result
        if last is None or remaining(deadline) <= 0:
            raise LLMError("timeout", "no time was left to ask the model")
        if last.kind == "unavailable":
            raise LLMError("unavailable", UNAVAILABLE)
        raise last

    async def _with_retries(
        self,
        messages: list[dict[str, Any]],
        deltas: _Deltas | None,
        deadline: float | None,
        **kw: Any,
    ) -> Completion:
        model = kw["model"]
        attempt = 0
        while True:
            left = remaining(deadline)
            started = time.monotonic()
            try:
                done = await self.inner.complete(
                    messages,
                    on_delta=deltas,
                    timeout_s=None if deadline is None else left,
                    **kw,
                )
            except LLMError as e:
                if deltas is not None and deltas.started:
                    raise  # text is out: never again
                if not e.retryable or attempt >= self.retries:
                    raise
                delay = random.uniform(*self._backoff(attempt))
                if remaining(deadline) - delay < self._needed(model):
                    raise  # the next try could not finish in time: do not start it
                attempt += 1
                await asyncio.sleep(delay)  # jittered backoff
                continue
            took = time.monotonic() - started
            self.typical_s[model] = 0.8 * self.typical_s.get(model, took) + 0.2 * took
            return done

    def _backoff(self, attempt: int) -> tuple[float, float]:
        delay = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return delay / 2, delay

    def _needed(self, model: str, *, first: bool = False) -> float:
        """The time an attempt needs to have a chance: what answers typically take."""
        typical = self.typical_s.get(model, 0.0)
        return typical if first else max(self.min_attempt_s, typical)
