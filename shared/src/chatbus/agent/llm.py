"""Talking to an OpenAI-compatible chat endpoint (OpenAI, Ollama, vLLM, llama.cpp, offline model).

Every call — plain, streamed (SSE), with tools, through a proxy — goes over one aiohttp
session: its connection pool, TLS, and proxy support. We speak the wire protocol ourselves
rather than through the ``openai`` SDK because the SDK (httpx, pydantic) costs ~1.3 ms of
CPU per call against aiohttp's ~0.1 ms (``bench/agent/llm_client.py``); the request and
response shapes are exactly the SDK's, so every OpenAI-compatible server works.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from yarl import URL

from chatbus.agent.ports import Completion, ToolCall
from chatbus.bus import trace_headers
from chatbus.contracts.chat import Usage

log = logging.getLogger("chatbus.agent.llm")

# Which agent makes a model call (the offline model answers per agent; proxies may log it).
AGENT_HEADER = "X-Chatbus-Agent"

tracer = trace.get_tracer("chatbus.agent.llm")

OnDelta = Callable[[str], Awaitable[None]]
CONNECT_TIMEOUT_S = 5.0


class LLMError(Exception):
    """A failed LLM call. ``retryable`` for 429, 5xx, timeouts and connection errors."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind in {"rate_limited", "server", "timeout", "connection"}


# A provider's error text may quote the credential ("Incorrect API key provided:
# sk-proj-****abcd"), and it travels into logs and to the caller: key-like tokens are
# dropped, and an authentication refusal keeps none of the provider's words.
_KEYLIKE = re.compile(r"(?i)\b(?:sk|rk|pk|key|proj|org)[-_][A-Za-z0-9*._-]{4,}")


def _error_for(status: int, text: str) -> LLMError:
    try:
        detail = json.loads(text).get("error", {})
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = text
    message = _KEYLIKE.sub("[redacted]", str(message)[:200])
    if status in (401, 403):
        message = "the model provider refused the credentials (check OPENAI_API_KEY)"
    if status == 429:
        return LLMError("rate_limited", f"LLM rate limited: {message}", status)
    if status >= 500:
        return LLMError("server", f"LLM server error {status}: {message}", status)
    return LLMError("client", f"LLM refused the request ({status}): {message}", status)


class OpenAIChat:
    """The :class:`~chatbus.agent.ports.LLM` port over HTTP, one connection pool per service."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float = 60.0) -> None:
        self.url = URL(base_url.rstrip("/") + "/chat/completions")
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s
        # Behind HTTP(S)_PROXY (NO_PROXY honoured) aiohttp reads the proxy, its credentials
        # and netrc from the environment; without one it skips that work on every call.
        self.proxied = uses_proxy(base_url)
        # The trust store as the environment names it when the client is made (SSL_CERT_FILE)
        self.tls = ssl.create_default_context() if self.url.scheme == "https" else None
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=512, ttl_dns_cache=300, ssl=self.tls if self.tls is not None else True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # a model API sets no cookies we keep
                trust_env=self.proxied,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        temperature: float,
        agent: str,
        tools: list[dict[str, Any]] | None = None,
        on_delta: OnDelta | None = None,
        timeout_s: float | None = None,
    ) -> Completion:
        """One call. ``timeout_s``: what is left of the message's deadline; the call takes at
        most that, and never more than ``LLM_TIMEOUT_S`` (a cap per attempt)."""
        limit = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        if limit <= 0:
            raise LLMError("timeout", "no time left for the model")
        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        if tools:
            body["tools"] = tools
        if on_delta is not None:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if not trace.get_current_span().is_recording():
            # A message whose trace is not recorded (no exporter, or sampled out): a span here
            # would record nothing either, and the trace context goes on as it came.
            headers = trace_headers({**self.headers, AGENT_HEADER: agent})
            return await self._post(body, headers, on_delta, limit)
        with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as span:
            headers = trace_headers({**self.headers, AGENT_HEADER: agent})
            span.set_attributes(
                {
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": model,
                    "chatbus.agent": agent,
                    "chatbus.stream": on_delta is not None,
                }
            )
            result = await self._post(body, headers, on_delta, limit)
            span.set_attribute("gen_ai.response.model", result.model)
            if result.usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)
            return result

    async def _post(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        on_delta: OnDelta | None,
        limit: float,
    ) -> Completion:
        model = str(body["model"])
        try:
            async with await self._send(orjson.dumps(body), headers, limit) as resp:
                if resp.status != 200:
                    raise _error_for(resp.status, await resp.text())
                if on_delta is not None:
                    return await _read_stream(resp, model, on_delta)
                raw = await resp.read()
        except TimeoutError as e:
            raise LLMError("timeout", f"LLM did not answer within {limit:.3g}s") from e
        except aiohttp.ClientError as e:
            raise LLMError("connection", f"cannot reach the LLM: {type(e).__name__}") from e
        return _parse_completion(_json(raw), model)

    async def _send(
        self, data: bytes, headers: dict[str, str], limit: float
    ) -> aiohttp.ClientResponse:
        """The response's head, within ``limit`` seconds (its body too, read after)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        timeout = aiohttp.ClientTimeout(total=limit, sock_connect=min(CONNECT_TIMEOUT_S, limit))
        try:
            return await self.session.post(self.url, data=data, headers=headers, timeout=timeout)
        except aiohttp.ServerDisconnectedError:
            # A kept-alive connection the server closed while it sat idle (the close not yet
            # read): the request met a closed socket and no answer began, so it goes once
            # more, on a new connection, in what is left of the time.
            left = end - loop.time()
            if left <= 0:
                raise
            timeout = aiohttp.ClientTimeout(total=left, sock_connect=min(CONNECT_TIMEOUT_S, left))
            return await self.session.post(self.url, data=data, headers=headers, timeout=timeout)


def uses_proxy(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (``HTTP(S)_PROXY``, ``NO_PROXY``)."""
    u = urlsplit(url)
    proxy = urllib.request.getproxies_environment().get(u.scheme)
    return bool(proxy) and not urllib.request.proxy_bypass(u.hostname or "")


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise LLMError("server", "LLM answered with something other than JSON") from e


def _parse_completion(data: dict[str, Any], model: str) -> Completion:
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as e:
        raise LLMError("server", "LLM answered without a choice") from e
    calls = [
        ToolCall(
            id=c.get("id", ""),
            name=c["function"]["name"],
            arguments=c["function"].get("arguments") or "{}",
        )
        for c in message.get("tool_calls") or []
    ]
    return Completion(
        content=message.get("content") or "",
        model=data.get("model") or model,
        usage=_usage(data.get("usage")),
        tool_calls=calls,
        finish_reason=choice.get("finish_reason") or "stop",
    )


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
    )


async def _read_stream(resp: aiohttp.ClientResponse, model: str, on_delta: OnDelta) -> Completion:
    """Read SSE as it arrives, a network read at a time (not a line at a time: an answer is
    hundreds of small events), passing each piece of text on."""
    answer = _StreamedAnswer(model)
    tail = b""
    async for data in resp.content.iter_any():
        *lines, tail = (tail + data).split(b"\n")
        for line in lines:
            for text in answer.add(line):
                await on_delta(text)
            if answer.done:
                return answer.completion()
    for text in answer.add(tail):  # a last line without its newline
        await on_delta(text)
    return answer.completion()


class _StreamedAnswer:
    """What the events of a streamed answer add up to."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage: Usage | None = None
        self.finish = "stop"
        self.ended = False  # by [DONE] or a finish_reason: anything else is a broken-off answer
        self.done = False  # [DONE]: nothing follows

    def add(self, line: bytes) -> list[str]:
        """Take one SSE line; the text it adds to the answer (to show the user)."""
        line = line.strip()
        if not line.startswith(b"data:"):
            return []
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.ended = self.done = True
            return []
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return []
        self.usage = _usage(chunk.get("usage")) or self.usage
        self.model = chunk.get("model") or self.model
        texts = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                self.parts.append(text)
                texts.append(text)
            for tc in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(
                    int(tc.get("index", 0)), {"id": "", "name": "", "args": ""}
                )
                fn = tc.get("function") or {}
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] += fn.get("name") or ""
                slot["args"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish, self.ended = choice["finish_reason"], True
        return texts

    def completion(self) -> Completion:
        if not self.ended:
            raise LLMError("connection", "the model's answer broke off before its end")
        tool_calls = [
            ToolCall(id=c["id"], name=c["name"], arguments=c["args"] or "{}")
            for _, c in sorted(self.calls.items())
        ]
        return Completion(
            content="".join(self.parts),
            model=self.model,
            usage=self.usage,
            tool_calls=tool_calls,
            finish_reason=self.finish,
        )
