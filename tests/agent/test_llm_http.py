"""The agent's LLM client over real HTTP: plain, streamed, tool-calling and proxied calls on one
path; framing, compression, kept-alive connections, faults, retries and a stream cut mid-way."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from aiohttp import ClientSession, web

from chatbus.agent.llm import LLMError, OpenAIChat
from chatbus.agent.ports import ToolCall
from chatbus.agent.resilience import ResilientLLM
from chatbus.deadline import after

ANSWER = {
    "model": "gpt-4o-mini",
    "choices": [{"message": {"role": "assistant", "content": "Hi there 👋"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3},
}
MESSAGES = [{"role": "user", "content": "Hello!"}]

Server = Callable[[web.Application], Awaitable[str]]


@pytest_asyncio.fixture
async def serve_app() -> AsyncIterator[Server]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for r in runners:
        await r.cleanup()


async def ask(url: str, *, streamed: bool = False, **kw: float) -> str:
    chat = OpenAIChat(url, "sk-test", **kw)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    try:
        done = await chat.complete(
            MESSAGES,
            model="gpt-4o-mini",
            temperature=0,
            agent="support",
            on_delta=on_delta if streamed else None,
        )
        if streamed:
            assert "".join(deltas) == done.content
        return done.content
    finally:
        await chat.close()


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def streamed_answer(text: str = "Hi there 👋") -> bytes:
    words = text.split(" ")
    deltas = [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
    chunks: list[dict[str, object]] = [
        {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": d}]} for d in deltas
    ]
    chunks.append(
        {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    )
    return sse(*chunks)


@pytest.mark.parametrize("framing", ["length", "chunked", "gzip", "deflate", "close"])
async def test_every_response_framing_is_read(serve_app: Server, framing: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"] == "Bearer sk-test"
        assert (await request.json())["messages"] == MESSAGES
        if framing == "length":
            return web.json_response(ANSWER)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if framing == "chunked":
            resp.enable_chunked_encoding()
        elif framing in ("gzip", "deflate"):
            resp.enable_compression(web.ContentCoding[framing])
        else:
            resp.force_close()
        await resp.prepare(request)
        data = orjson.dumps(ANSWER)
        for i in range(0, len(data), 7):
            await resp.write(data[i : i + 7])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    assert await ask(await serve_app(app)) == "Hi there 👋"


async def test_a_body_that_ends_at_the_close_is_read() -> None:
    """An HTTP/1.0-style answer (no length, ends at the close), after an informational one."""
    body = orjson.dumps(ANSWER)

    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(raw, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await ask(f"http://127.0.0.1:{port}/v1") == "Hi there 👋"
    finally:
        server.close()


async def test_connections_are_kept_alive_and_a_dropped_one_is_replaced(
    serve_app: Server,
) -> None:
    connections: list[asyncio.BaseTransport] = []

    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        if request.transport not in connections:
            connections.append(request.transport)
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    chat = OpenAIChat(await serve_app(app), None)
    try:
        for _ in range(5):
            await chat.complete(MESSAGES, model="gpt-4o-mini", temperature=0, agent="support")
        assert len(connections) == 1  # five calls, one connection
        connections[0].close()  # the server drops the idle connection
        done = await chat.complete(MESSAGES, model="gpt-4o-mini", temperature=0, agent="support")
        assert done.content == "Hi there 👋"
        assert len(connections) == 2
    finally:
        await chat.close()


async def test_faults_become_clear_llm_errors(serve_app: Server) -> None:
    with pytest.raises(LLMError) as refused:
        await ask("http://127.0.0.1:1/v1")
    assert refused.value.kind == "connection"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(LLMError) as slow:
            await ask(f"http://127.0.0.1:{port}/v1", timeout_s=0.3)
        assert slow.value.kind == "timeout"
    finally:
        server.close()

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy error</html>", content_type="text/html")

    async def overloaded(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "slow down"}}, status=429)

    app = web.Application()
    app.router.add_post("/garbage/chat/completions", garbage)
    app.router.add_post("/busy/chat/completions", overloaded)
    base = (await serve_app(app)).removesuffix("/v1")
    with pytest.raises(LLMError) as not_json:
        await ask(f"{base}/garbage")
    assert not_json.value.kind == "server"
    with pytest.raises(LLMError, match="slow down") as limited:
        await ask(f"{base}/busy")
    assert limited.value.kind == "rate_limited"


async def test_tool_calls_are_read_alike_from_plain_and_streamed_answers(serve_app: Server) -> None:
    """One path for every call: the tool the model asks for, whole or in SSE pieces."""
    call = {"id": "call_1", "type": "function", "function": {"name": "order_status"}}
    args = '{"order_id": "A-17"}'
    tool = {"type": "function", "function": {"name": "order_status", "parameters": {}}}

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        assert body["tools"] == [tool]
        if not body.get("stream"):
            message = {
                "role": "assistant",
                "tool_calls": [{**call, "function": {**call["function"], "arguments": args}}],
            }
            choice = {"message": message, "finish_reason": "tool_calls"}
            return web.json_response({"model": "gpt-4o-mini", "choices": [choice]})
        assert body["stream_options"] == {"include_usage": True}
        pieces = [{"index": 0, **call, "function": {"name": "order_status", "arguments": args[:6]}}]
        pieces.append({"index": 0, "function": {"arguments": args[6:]}})
        chunks: list[dict[str, object]] = [
            {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"tool_calls": [p]}}]}
            for p in pieces
        ]
        chunks.append(
            {
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            }
        )
        chunks.append(
            {
                "model": "gpt-4o-mini",
                "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4},
            }
        )
        return web.Response(body=sse(*chunks), content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    chat = OpenAIChat(await serve_app(app), None)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    try:
        kw = {"model": "gpt-4o-mini", "temperature": 0.0, "agent": "support", "tools": [tool]}
        plain = await chat.complete(MESSAGES, **kw)  # type: ignore[arg-type]
        streamed = await chat.complete(MESSAGES, on_delta=on_delta, **kw)  # type: ignore[arg-type]
    finally:
        await chat.close()
    expected = [ToolCall(id="call_1", name="order_status", arguments=args)]
    assert plain.tool_calls == expected and plain.finish_reason == "tool_calls"
    assert streamed.tool_calls == expected and streamed.finish_reason == "tool_calls"
    assert streamed.usage is not None and streamed.usage.completion_tokens == 4
    assert deltas == []  # a tool call is no text for the user


async def test_a_failing_model_is_retried_but_a_stream_cut_mid_answer_is_not(
    serve_app: Server,
) -> None:
    calls: list[bool] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        streamed = bool((await request.json()).get("stream"))
        calls.append(streamed)
        if len(calls) == 1:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        if not streamed:
            return web.json_response(ANSWER)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(streamed_answer("Hello there").split(b"\n\n")[0] + b"\n\n")
        assert request.transport is not None
        request.transport.close()  # the connection breaks after the first words
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    chat = OpenAIChat(await serve_app(app), None)
    llm = ResilientLLM(chat, retries=2, base_delay_s=0.01)
    kw = {"model": "gpt-4o-mini", "temperature": 0.0, "agent": "support", "deadline": after(10)}
    shown: list[str] = []

    async def on_delta(text: str) -> None:
        shown.append(text)

    try:
        done = await llm.complete(MESSAGES, **kw)  # type: ignore[arg-type]
        assert done.content == "Hi there 👋"
        assert calls == [False, False]  # a 503, then the answer
        with pytest.raises(LLMError) as cut:
            await llm.complete(MESSAGES, on_delta=on_delta, fallback_model="backup", **kw)  # type: ignore[arg-type]
    finally:
        await chat.close()
    assert cut.value.kind == "interrupted"
    assert shown == ["Hello"]  # the start of the answer, once
    assert calls == [False, False, True]  # no retry, no fallback once text was out


async def test_each_attempt_gets_what_is_left_of_the_deadline() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    chat = OpenAIChat(f"http://127.0.0.1:{port}/v1", None, timeout_s=60)
    llm = ResilientLLM(chat, retries=5)
    started = time.monotonic()
    try:
        with pytest.raises(LLMError) as late:
            await llm.complete(
                MESSAGES, model="m", temperature=0, agent="support", deadline=after(0.4)
            )
        assert late.value.kind == "timeout"
        # The 60 s cap per attempt did not apply: the message's deadline did, retries included.
        assert time.monotonic() - started < 5
    finally:
        await chat.close()
        server.close()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for localhost and its key (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *subject,
            *files,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_with_the_systems_trust_store(
    self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https base URL (a self-hosted server with its own CA, trusted via SSL_CERT_FILE)."""
    cert, key = self_signed
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with pytest.raises(LLMError) as untrusted:  # not trusted yet: refused, clearly
            await ask(f"https://localhost:{port}/v1")
        assert untrusted.value.kind == "connection"
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert await ask(f"https://localhost:{port}/v1") == "Hi there 👋"
    finally:
        await runner.cleanup()


async def test_calls_go_through_the_proxy_the_environment_names(
    serve_app: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY (and NO_PROXY) are honoured, by plain and streamed calls alike."""

    async def answer(request: web.Request) -> web.Response:
        if (await request.json()).get("stream"):
            return web.Response(body=streamed_answer(), content_type="text/event-stream")
        return web.json_response(ANSWER)

    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", answer)
    target = await serve_app(upstream)

    relayed: list[str] = []

    async def relay(request: web.Request) -> web.Response:
        """A forward proxy: the request line carries the absolute URL of the target."""
        relayed.append(str(request.url))
        async with ClientSession() as client:
            body = await request.read()
            headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
            async with client.post(str(request.url), data=body, headers=headers) as r:
                return web.Response(body=await r.read(), status=r.status, headers=headers)

    proxy = web.Application()
    proxy.router.add_route("*", "/{tail:.*}", relay)
    proxy_url = (await serve_app(proxy)).removesuffix("/v1")
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("http_proxy", proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    assert await ask(target) == "Hi there 👋"
    assert await ask(target, streamed=True) == "Hi there 👋"
    assert relayed == [f"{target}/chat/completions"] * 2
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert await ask(target) == "Hi there 👋"
    assert len(relayed) == 2  # straight to the target this time
