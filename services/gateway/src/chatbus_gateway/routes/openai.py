"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Point the OpenAI SDK at ``http://host:8080/v1`` with a chatbus API key and ``model=<agent id>``.
The agent keeps each conversation's history, so only the **last user message** is sent; the
earlier messages only identify the conversation. The chatbus session id is, in order: the
``X-Session-Id`` header, a ``session_id`` body field (``extra_body``), else ``oa-`` + a hash
of the tenant, the ``user`` field and the conversation's first user message. The ``user``
field is the chatbus user id. Unknown fields are ignored, as OpenAI does.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from aiohttp import web

from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus_gateway.api.body import json_response, read_model
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.openai_schemas import (
    ChatCompletion,
    ChatCompletionsIn,
    InMessage,
    ModelList,
    usage_of,
)
from chatbus_gateway.api.params import check_id
from chatbus_gateway.api.request_ids import new_request_id
from chatbus_gateway.api.route_table import (
    CHAT_ERRORS,
    IDEMPOTENCY_KEY,
    Answer,
    Route,
    add_routes,
    header,
)
from chatbus_gateway.api.sse import open_sse, send_event
from chatbus_gateway.auth.caller import tenant_of
from chatbus_gateway.deps import DEPS
from chatbus_gateway.flow.dispatch import AGENT_ID
from chatbus_gateway.flow.pipeline import PIPELINE, REPLAYED
from chatbus_gateway.flow.traffic import CHAT_AGENT
from chatbus_gateway.peers.agents import discover


def session_for(request: web.Request, body: ChatCompletionsIn, tenant: str) -> str:
    given = request.headers.get("X-Session-Id") or body.session_id
    if given:
        return check_id(given, "X-Session-Id")
    first = next((m.text() for m in body.messages if m.role == "user"), "")
    seed = "\0".join((tenant, body.user or "", first))
    return "oa-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def last_user_message(messages: list[InMessage], max_chars: int) -> str:
    """The new message: the last user message that has text."""
    text = next((m.text() for m in reversed(messages) if m.role == "user" and m.text().strip()), "")
    if not text:
        raise ApiError(422, "messages: needs a non-empty user message", param="messages")
    if len(text) > max_chars:
        raise ApiError(
            422,
            f"messages: the user message is longer than {max_chars} characters",
            param="messages",
        )
    return text


async def chat_completions(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    body = await read_model(request, ChatCompletionsIn, deps.settings.max_body_bytes)
    if not AGENT_ID.match(body.model):
        raise ApiError(404, f"unknown model {body.model[:80]!r}", type="not_found", param="model")
    request[CHAT_AGENT] = body.model
    tenant = tenant_of(request)
    req = ChatRequest(
        request_id=new_request_id(),
        agent=body.model,
        session_id=session_for(request, body, tenant),
        message=last_user_message(body.messages, deps.settings.max_message_chars),
        user_id=body.user,
        tenant_id=tenant,
    )
    created = int(time.time())
    headers = {"X-Session-Id": req.session_id, "X-Request-Id": req.request_id}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _stream(request, req, created, include_usage, headers)
    reply, replayed = await request.app[PIPELINE].reply(request, req)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(completion(reply, body.model, created), headers=headers)


def completion(reply: ChatReply, model: str, created: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{reply.request_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.reply},
                "finish_reason": "stop",
            }
        ],
        "usage": usage_of(reply.usage.prompt_tokens, reply.usage.completion_tokens),
        "session_id": reply.session_id,
        "agent": reply.agent,
    }


def chunk(
    req: ChatRequest, created: int, delta: dict[str, Any], finish: str | None
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{req.request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": req.agent,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def _stream(
    request: web.Request,
    req: ChatRequest,
    created: int,
    include_usage: bool,
    headers: dict[str, str],
) -> web.StreamResponse:
    items = request.app[PIPELINE].stream(request, req)
    try:
        item = await anext(items)  # errors before the first chunk are plain JSON answers
        if request.get(REPLAYED):
            headers["Idempotent-Replayed"] = "true"
        resp = await open_sse(request, headers)
        await send_event(resp, chunk(req, created, {"role": "assistant", "content": ""}, None))
        try:
            while not isinstance(item, ChatReply):
                if item.delta:
                    await send_event(resp, chunk(req, created, {"content": item.delta}, None))
                item = await anext(items)
            await send_event(resp, chunk(req, created, {}, "stop"))
            if include_usage:
                final = chunk(req, created, {}, None)
                final["choices"] = []
                final["usage"] = usage_of(item.usage.prompt_tokens, item.usage.completion_tokens)
                await send_event(resp, final)
        except ApiError as e:
            await send_event(resp, e.body())
        await send_event(resp, "[DONE]")
        await resp.write_eof()
        return resp
    finally:
        await items.aclose()


async def models(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    agents = await discover(deps.bus, deps.settings.agents_window_s)
    data = [
        {
            "id": a["id"],
            "object": "model",
            "created": 0,
            "owned_by": "chatbus",
            "description": a["description"],
            "instances": a["instances"],
        }
        for a in agents
    ]
    return web.json_response({"object": "list", "data": data})


def setup_openai_routes(app: web.Application) -> None:
    completed = Answer(
        "A chat.completion, or chat.completion.chunk events",
        ChatCompletion,
        events="data: chat.completion.chunk ... data: [DONE]",
    )
    session = header("X-Session-Id", "The chatbus session of this conversation")
    add_routes(
        app,
        [
            Route(
                "POST",
                "/v1/chat/completions",
                chat_completions,
                "OpenAI-compatible chat completion (model = agent id)",
                {200: completed},
                CHAT_ERRORS,
                body=ChatCompletionsIn,
                params=(session, IDEMPOTENCY_KEY),
            ),
            Route(
                "GET",
                "/v1/models",
                models,
                "The agents, as OpenAI models",
                {200: Answer("Models", ModelList)},
            ),
        ],
    )
