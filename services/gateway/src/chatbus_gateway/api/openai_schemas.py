"""The OpenAI-compatible API's bodies. Unknown fields are ignored, as OpenAI's API does."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chatbus_gateway.api.params import BodyId, UserId


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class InMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))


# What /openapi.json says a conversation must contain (the gateway sends the last one).
USER_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"const": "user"},
        "content": {"type": "string", "pattern": "\\S"},
    },
}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionsIn(BaseModel):
    """``POST /v1/chat/completions``. ``model`` is the agent id; the last user message is sent.

    The agent keeps the conversation's history itself: earlier messages only identify the
    conversation (see the session rules in the API description).
    """

    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]
    messages: list[InMessage] = Field(
        min_length=1,
        description="The conversation; it must hold a user message with text",
        json_schema_extra={"contains": USER_MESSAGE},
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: UserId | None = None
    # chatbus extension (``extra_body={"session_id": ...}``); X-Session-Id wins over it.
    session_id: BodyId | None = None


class OutMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: OutMessage
    finish_reason: Literal["stop", "length"] = "stop"


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    # chatbus additions (ignored by the SDK, readable with ``completion.model_extra``)
    session_id: str | None = None
    agent: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "chatbus"
    description: str | None = None
    instances: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def usage_of(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
