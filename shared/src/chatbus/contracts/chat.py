"""Chat: what the gateway asks an agent, and what the agent answers."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from chatbus.contracts.base import Message


class Usage(Message):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatRequest(Message):
    """Ask an agent to answer one user message. Sent by request/reply to ``subject_for(agent)``."""

    subject: ClassVar[str] = "chat.request.v1"

    request_id: str
    agent: str
    session_id: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1)
    user_id: str | None = None
    tenant_id: str = "default"
    # When set, the agent publishes ChatChunk messages to this subject while it answers.
    stream_inbox: str | None = None
    # How many handoffs this message has already gone through (cuts handoff loops).
    handoff_depth: int = 0
    handoff_from: str | None = None
    # When the caller stops waiting (Unix seconds, set once by the gateway from
    # REQUEST_TIMEOUT_S or the async job's deadline). Every hop works within what is left and
    # stops when it is gone; None (an old sender): the agent's own default budget.
    deadline: float | None = None
    # Idempotency and async jobs reuse request ids; the agent does not care, the gateway does.

    @staticmethod
    def subject_for(agent: str) -> str:
        return f"{ChatRequest.subject}.{agent}"


class ChatReply(Message):
    request_id: str
    agent: str
    session_id: str
    reply: str
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    handoff_from: str | None = None
    # Why the answer is not the model's normal answer: "budget" (hard limit reached), ...
    degraded: str | None = None
    cached: bool = False


class ChatChunk(Message):
    """One piece of a streamed answer, published to ``ChatRequest.stream_inbox``."""

    request_id: str
    index: int
    delta: str = ""
    agent: str = ""
    done: bool = False


class AgentPing(Message):
    """Ask every running agent instance to introduce itself (gateway ``GET /api/agents``)."""

    subject: ClassVar[str] = "agents.ping.v1"


class AgentInfo(Message):
    id: str
    label: str
    description: str = ""
    instance_id: str
    model: str = ""
    status: Literal["up", "draining"] = "up"


class Turn(Message):
    """One message of a conversation, as kept in history and memory."""

    role: Literal["user", "assistant", "system", "summary"]
    content: str
    created_at: float = 0.0
    agent: str | None = None
    speaker: str | None = None
