"""What the agent handler needs from the world, as small protocols.

Adapters over the bus, Redis and the LLM implement them in production; unit tests pass small
fakes. The handler never imports nats, redis or aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from chatbus.contracts.chat import ChatRequest, Turn, Usage
from chatbus.contracts.cost import Authorization as Authorization  # re-exported: a port's type


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass
class Completion:
    content: str
    model: str
    usage: Usage | None = None  # None when the provider did not report usage
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    # Kept (step results) together with the turns of its reply: a request delivered again
    # after it was answered gives the same answer and writes nothing a second time.
    answered: bool = False


class LLM(Protocol):
    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        temperature: float,
        agent: str,
        tools: list[dict[str, Any]] | None = None,
        on_delta: Any = None,  # async callable(str) for streamed text, or None
        timeout_s: float | None = None,  # what is left of the message's deadline
    ) -> Completion: ...


class History(Protocol):
    """Recent turns of a session (short-term continuity)."""

    async def recent(self, tenant_id: str, session_id: str, n: int) -> list[Turn]: ...

    async def append(
        self, tenant_id: str, session_id: str, turns: list[Turn], user_id: str | None = None
    ) -> None: ...


class Memory(Protocol):
    """Long-term semantic memory (the memory service)."""

    async def recall(self, req: ChatRequest, *, k: int, scope: str) -> list[Turn]: ...

    async def profile(self, req: ChatRequest) -> dict[str, str]:
        """Stable facts about the requesting user (name, city, plan ...), ``{}`` if none;
        raises :class:`~chatbus.errors.RecallSkipped` when memory did not answer in time."""
        ...

    async def remember(self, req: ChatRequest, turns: list[Turn]) -> None: ...


class Costs(Protocol):
    """Budgets and usage accounting (the cost service)."""

    async def authorize(
        self, req: ChatRequest, *, model: str, cheap_model: str | None, prompt_tokens: int
    ) -> Authorization: ...

    async def record(
        self,
        req: ChatRequest,
        auth: Authorization,
        *,
        model: str,
        usage: Usage,
        cached: bool,
        counted: bool,
    ) -> None: ...


class StepResults(Protocol):
    """Model answers of earlier attempts of the same request, per step (reused, not repaid)."""

    async def get(self, req: ChatRequest, agent: str, step: int) -> Completion | None: ...

    async def put(self, req: ChatRequest, agent: str, step: int, done: Completion) -> None: ...

    def reused(self, agent: str, step: int) -> None:
        """Count a result found by another read (the session reader's, for step 0)."""


class ResponseCache(Protocol):
    async def get(
        self, agent: str, model: str, messages: list[dict[str, Any]], *, tenant_id: str = ...
    ) -> str | None: ...

    async def put(
        self,
        agent: str,
        model: str,
        messages: list[dict[str, Any]],
        reply: str,
        *,
        tenant_id: str = ...,
    ) -> None: ...


class Tokens(Protocol):
    def count_messages(self, messages: list[dict[str, Any]], model: str) -> int: ...

    def count_text(self, text: str, model: str) -> int: ...
