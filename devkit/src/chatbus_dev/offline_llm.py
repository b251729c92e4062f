"""The built-in offline model: a local OpenAI-compatible server that answers deterministically.

With no ``OPENAI_API_KEY`` and no ``OPENAI_BASE_URL``, ``chatbus up`` starts it so the whole
system runs end to end without a key. Every reply says it comes from the offline model and
reflects what it received (agent, number of context messages), so the pipeline can be seen
working; with ``intents`` on (what ``chatbus up`` runs) it also hands over, looks orders up and
opens tickets through the agents' real tools (:mod:`chatbus_dev.offline_intents`). Tests use the
same server, with scripted replies, recorded requests and injected faults, over real HTTP.

Endpoints: ``POST /v1/chat/completions`` (JSON, or SSE with ``stream: true``, tool calls
included), ``POST /v1/embeddings``, ``GET /v1/models``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import time
import uuid
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from chatbus.agent.llm import AGENT_HEADER
from chatbus_dev import offline_intents

OFFLINE_MODEL = "chatbus-offline"


@dataclass
class Scripted:
    """One scripted answer: text, tool calls, or an HTTP error status."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    error: str = "scripted failure"
    delay_s: float = 0.0


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def system(self) -> str:
        return "\n".join(str(m.get("content")) for m in self.messages if m.get("role") == "system")

    @property
    def prompt_text(self) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.messages)


def approx_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def offline_answer(body: dict[str, Any], agent: str) -> str:
    messages = body.get("messages") or []
    last_user = next(
        (str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), ""
    )
    context = max(0, len(messages) - 1)
    who = agent or "assistant"
    return (
        f"[offline model] {who} here. I received {context} context "
        f"{'message' if context == 1 else 'messages'} "
        f"and your message: {last_user[:200]!r}. "
        "Set OPENAI_API_KEY (or OPENAI_BASE_URL) for real answers."
    )


@dataclass
class OfflineLLM:
    """State of the server; tests reach in to script answers and read what was sent."""

    latency_s: float = 0.0
    record: bool = True
    max_recorded: int = 10_000
    requests: deque[Recorded] = field(default_factory=deque)
    script: deque[Scripted] = field(default_factory=deque)
    calls: int = 0
    embedding_calls: int = 0
    last_embedding_request: dict[str, Any] = field(default_factory=dict)
    dims: int = 64
    on_request: asyncio.Event = field(default_factory=asyncio.Event)
    # Recognise plain intents and call the agent's tools (chatbus_dev.offline_intents), as the
    # offline model of `chatbus up` does; off by default so tests script every answer.
    intents: bool = False

    def push(self, *answers: Scripted) -> None:
        self.script.extend(answers)

    def fail_next(self, status: int, times: int = 1) -> None:
        self.script.extend(Scripted(status=status) for _ in range(times))

    def requests_for(self, agent: str) -> list[Recorded]:
        return [r for r in self.requests if r.headers.get(AGENT_HEADER) == agent]

    # -- HTTP -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model": OFFLINE_MODEL})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": OFFLINE_MODEL, "object": "model", "created": 0, "owned_by": "chatbus"}
                ],
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "messages is required")
        self.calls += 1
        if self.record:
            self.requests.append(Recorded(body=body, headers=dict(request.headers)))
            while len(self.requests) > self.max_recorded:
                self.requests.popleft()
        self.on_request.set()
        scripted = self.script.popleft() if self.script else None
        delay = self.latency_s + (scripted.delay_s if scripted else 0.0)
        if delay:
            await asyncio.sleep(delay)  # simulated model latency
        if scripted and scripted.status != 200:
            return _error(scripted.status, scripted.error)
        agent = request.headers.get(AGENT_HEADER, "")
        content = scripted.content if scripted else None
        tool_calls = scripted.tool_calls if scripted else None
        if content is None and not tool_calls and self.intents:
            tool_calls = offline_intents.tool_calls_for(body)
            content = (
                None if tool_calls else offline_intents.answer_after_tools(body["messages"], agent)
            )
        if content is None and not tool_calls:
            content = offline_answer(body, agent)
        model = str(body.get("model") or OFFLINE_MODEL)
        prompt_tokens = sum(
            approx_tokens(str(m.get("content") or "")) + 4 for m in body["messages"]
        )
        completion_tokens = approx_tokens(content or json.dumps(tool_calls))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        if body.get("stream"):
            return await self._stream(request, cid, model, content, tool_calls, usage)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = _with_ids(tool_calls)
        return web.json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if tool_calls else "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def _stream(
        self,
        request: web.Request,
        cid: str,
        model: str,
        content: str | None,
        tool_calls: list[dict[str, Any]] | None,
        usage: dict[str, int],
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        await resp.write(chunk({"role": "assistant", "content": ""}))
        if tool_calls:
            calls = _with_ids(tool_calls)
            await resp.write(chunk({"tool_calls": [dict(c, index=i) for i, c in enumerate(calls)]}))
            await resp.write(chunk({}, "tool_calls"))
        else:
            words = (content or "").split(" ")
            for i, word in enumerate(words):
                await resp.write(chunk({"content": word if i == 0 else " " + word}))
            await resp.write(chunk({}, "stop"))
        final = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": usage,
        }
        await resp.write(f"data: {json.dumps(final)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def embeddings(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid JSON body")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list):
            return _error(400, "input is required")
        self.embedding_calls += 1
        self.last_embedding_request = body
        dims = int(body.get("dimensions") or self.dims)
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": (
                    base64.b64encode(array("f", hash_embedding(str(t), dims)).tobytes()).decode()
                    if as_base64
                    else hash_embedding(str(t), dims)
                ),
            }
            for i, t in enumerate(inputs)
        ]
        tokens = sum(approx_tokens(str(t)) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", OFFLINE_MODEL),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def hash_embedding(text: str, dims: int) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words get similar vectors."""
    vec = [0.0] * dims
    for word in text.lower().split():
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vec[h % dims] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _with_ids(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(tool_calls):
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        out.append(
            {
                "id": call.get("id") or f"call_{i}_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {
                    "name": fn["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    return out


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "offline_error", "code": status}}, status=status
    )


async def start(
    llm: OfflineLLM, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve ``llm`` and return the runner and its base URL (``http://host:port/v1``)."""
    runner = web.AppRunner(llm.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}/v1"


def main() -> None:
    """``python -m chatbus_dev.offline_llm [PORT] [LATENCY_MS] [--host HOST]``: serve the model."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m chatbus_dev.offline_llm", description=__doc__)
    ap.add_argument("port", type=int, nargs="?", default=8099)
    ap.add_argument("latency_ms", type=float, nargs="?", default=0.0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--embedding-dims", type=int, default=64, help="size of /v1/embeddings vectors")
    args = ap.parse_args()
    llm = OfflineLLM(
        record=False, latency_s=args.latency_ms / 1000, intents=True, dims=args.embedding_dims
    )
    print(  # noqa: T201
        f"chatbus offline model on http://{args.host}:{args.port}/v1 — not a real LLM",
        flush=True,
    )
    web.run_app(llm.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
