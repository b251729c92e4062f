"""The native chat API: ``POST /api/chat/{agent_id}`` (JSON, SSE, or an async job)."""

from __future__ import annotations

from aiohttp import web

from chatbus.contracts.chat import ChatChunk, ChatReply, ChatRequest
from chatbus_gateway.api.body import json_response, read_model
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.request_ids import new_request_id
from chatbus_gateway.api.route_table import (
    CHAT_ERRORS,
    IDEMPOTENCY_KEY,
    Answer,
    Route,
    add_routes,
    path,
    query,
)
from chatbus_gateway.api.schemas import ChatIn, ChatOut, JobAccepted
from chatbus_gateway.api.sse import open_sse, send_error, send_event
from chatbus_gateway.auth.caller import tenant_of
from chatbus_gateway.deps import DEPS
from chatbus_gateway.flow.dispatch import check_agent_id
from chatbus_gateway.flow.pipeline import PIPELINE, REPLAYED
from chatbus_gateway.flow.traffic import CHAT_AGENT
from chatbus_gateway.jobs.submit import submit_job


def wants_stream(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


async def chat(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    agent = check_agent_id(request.match_info["agent_id"])
    request[CHAT_AGENT] = agent
    mode = request.query.get("mode", "sync")
    if mode not in ("sync", "async"):
        raise ApiError(422, "mode: must be 'sync' or 'async'", param="mode")
    body = await read_model(request, ChatIn, deps.settings.max_body_bytes)
    if len(body.message) > deps.settings.max_message_chars:
        raise ApiError(
            422,
            f"message: longer than {deps.settings.max_message_chars} characters",
            param="message",
        )
    req = ChatRequest(
        request_id=new_request_id(),
        agent=agent,
        session_id=body.session_id,
        message=body.message,
        user_id=body.user_id,
        tenant_id=tenant_of(request),
    )
    if mode == "async":
        return await submit_job(request, req, body.callback_url)
    pipeline = request.app[PIPELINE]
    if wants_stream(request):
        return await _stream(request, req)
    reply, replayed = await pipeline.reply(request, req)
    headers = {"X-Request-Id": reply.request_id}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(ChatOut.of(reply, reply.request_id), headers=headers)


async def _stream(request: web.Request, req: ChatRequest) -> web.StreamResponse:
    """SSE: ``chunk`` events ``{index, delta}``, then ``done`` (the JSON reply) or ``error``."""
    items = request.app[PIPELINE].stream(request, req)
    try:
        first = await anext(items)  # errors before the first chunk are plain JSON answers
        headers = {"X-Request-Id": req.request_id}
        if request.get(REPLAYED):
            headers["Idempotent-Replayed"] = "true"
        resp = await open_sse(request, headers)
        item: ChatChunk | ChatReply | None = first
        try:
            while item is not None:
                if isinstance(item, ChatReply):
                    await send_event(resp, ChatOut.of(item, req.request_id), "done")
                    break
                if item.delta:
                    await send_event(resp, {"index": item.index, "delta": item.delta}, "chunk")
                item = await anext(items, None)
        except Exception as e:
            if isinstance(e, ConnectionResetError):
                raise  # the caller went away: nobody to tell
            await send_error(resp, e)
        await resp.write_eof()
        return resp
    finally:
        await items.aclose()


AGENT_ID = path("agent_id", {"type": "string", "minLength": 1, "maxLength": 64})
MODE = query("mode", {"type": "string", "enum": ["sync", "async"]})


def setup_chat_routes(app: web.Application) -> None:
    reply = Answer(
        "The agent's reply (JSON, or SSE when asked)",
        ChatOut,
        events="chunk events, then done (ChatOut) or error",
    )
    add_routes(
        app,
        [
            Route(
                "POST",
                "/api/chat/{agent_id}",
                chat,
                "Send a message to an agent",
                {200: reply, 202: Answer("Queued", JobAccepted)},
                CHAT_ERRORS,
                body=ChatIn,
                params=(AGENT_ID, MODE, IDEMPOTENCY_KEY),
            )
        ],
    )
