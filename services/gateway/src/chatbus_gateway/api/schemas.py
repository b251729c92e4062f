"""The native API's request and response bodies (also the source of /openapi.json schemas)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chatbus.contracts.chat import ChatReply
from chatbus_gateway.api.params import BodyId, UserId

NonBlank = Annotated[str, StringConstraints(strict=True, min_length=1, pattern=r"\S")]


class ChatIn(BaseModel):
    """``POST /api/chat/{agent_id}``. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    message: NonBlank = Field(description="The user's new message (length limit configurable)")
    session_id: BodyId
    user_id: UserId | None = None
    # With ?mode=async: POSTed the job's final state when it is done (ignored otherwise).
    callback_url: (
        Annotated[str, StringConstraints(strict=True, max_length=2000, pattern=r"^https?://")]
        | None
    ) = None


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ChatOut(BaseModel):
    reply: str
    agent: str
    session_id: str
    request_id: str
    model: str | None = None
    usage: UsageOut
    handoff_from: str | None = None
    degraded: str | None = None
    cached: bool | None = None

    @classmethod
    def of(cls, reply: ChatReply, request_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reply": reply.reply,
            "agent": reply.agent,
            "session_id": reply.session_id,
            "request_id": request_id,
            "usage": {
                "prompt_tokens": reply.usage.prompt_tokens,
                "completion_tokens": reply.usage.completion_tokens,
            },
        }
        if reply.model:
            out["model"] = reply.model
        if reply.handoff_from:
            out["handoff_from"] = reply.handoff_from
        if reply.degraded:
            out["degraded"] = reply.degraded
        if reply.cached:
            out["cached"] = True
        return out


class AgentOut(BaseModel):
    id: str
    label: str
    description: str
    model: str
    instances: int = Field(description="Instances running and taking work")
    draining: int = Field(description="Instances finishing their work before stopping")


class AgentsOut(BaseModel):
    agents: list[AgentOut]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int
    param: str | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


class JobAccepted(BaseModel):
    job_id: str
    status: Literal["queued"]
    request_id: str


class JobOut(BaseModel):
    job_id: str
    # "waiting": no instance of the agent runs; asked again soon, not counted as an attempt.
    status: Literal["queued", "waiting", "running", "retrying", "done", "failed", "dead_lettered"]
    agent: str
    session_id: str
    attempts: int
    created_at: float
    updated_at: float
    # Unix time by which the job is answered, else dead-lettered (renewed by a re-drive).
    deadline: float | None = None
    result: ChatOut | None = None
    error: ErrorDetail | None = None
    # The callback's outcome so far: "delivered (<status>)", "failed (<status>)", or "failed"
    # when no HTTP answer came (or the URL is not one the gateway may call).
    callback: str | None = None


class DeadLetterOut(BaseModel):
    seq: int
    subject: str
    reason: str
    deliveries: int
    consumer: str
    job_id: str | None = None
    agent: str | None = None


class DeadLettersOut(BaseModel):
    dead_letters: list[DeadLetterOut]
    # Pass as ``after`` for the next page; null when this page reached the end.
    next_after: int | None = None


class RedriveOut(BaseModel):
    seq: int
    subject: str
    job_id: str | None = None
