"""A lean HTTP/1.1 client for the LLM call: keep-alive connections, one JSON POST at a time each.

The agent makes one HTTP call per message, and aiohttp's client spends ~240 µs of CPU on
it (request and response objects, cookie jar, timers, multidicts), about a quarter of the
agent's work per message. This client does only what that call needs, ~40 µs: a pool of
keep-alive connections (plain or TLS) to one origin, a request written in one go, the
response parsed by llhttp (``httptools``; Content-Length, chunked, keep-alive rules), gzip
and deflate bodies decoded. A pooled connection the server closed while idle is retried once
on a new one, and only when the server had sent nothing back. Streaming (SSE) responses go
through aiohttp instead (see ``llm.py``).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


class HttpConnectionError(ConnectionError):
    """The request never got a complete response (refused, reset, closed, unparseable)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Conn(asyncio.Protocol):
    """One connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.fut: asyncio.Future[Response] | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.got_bytes = False
        self.headers_done = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(HttpConnectionError(f"malformed HTTP response: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None and self.fut is not None and self._ends_at_close():
            self.on_message_complete()
            return
        self._fail(HttpConnectionError(f"connection closed by the server: {exc or 'EOF'}"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def _ends_at_close(self) -> bool:
        """A response with neither a length nor chunks: its body is all until the close."""
        h = self.headers
        return self.headers_done and "content-length" not in h and "transfer-encoding" not in h

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational (100 Continue, 103 Early Hints): more to come
            self._reset()
            return
        fut, self.fut = self.fut, None
        response = Response(status, self.headers, b"".join(self.body))
        if not self.parser.should_keep_alive():
            self.close()
        self._reset()
        if fut is not None and not fut.done():
            fut.set_result(response)

    # -- use ---------------------------------------------------------------------------------

    def request(self, payload: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.fut

    def _fail(self, exc: Exception) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """Keep-alive connections to the origin of ``base_url`` (``http://`` or ``https://``)."""

    def __init__(self, base_url: str, *, limit: int = 512, connect_timeout_s: float = 5.0) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.tls = ssl.create_default_context() if u.scheme == "https" else None
        self.host = u.hostname
        self.port = u.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not default_port:  # IPv6 literal
            self.host_header = f"[{self.host}]:{self.port}"
        self.base_path = u.path.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self._idle: deque[_Conn] = deque()
        self._slots = asyncio.Semaphore(limit)
        self._all: set[_Conn] = set()

    def encode(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [
            f"POST {self.base_path}{path} HTTP/1.1",
            f"Host: {self.host_header}",
            f"Content-Length: {len(body)}",
            "Accept-Encoding: gzip, deflate",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def post(
        self, path: str, body: bytes, headers: dict[str, str], *, timeout_s: float
    ) -> Response:
        """POST ``body`` to ``base_url + path``; the whole response within ``timeout_s``."""
        payload = self.encode(path, body, headers)
        async with self._slots, asyncio.timeout(timeout_s):
            for attempt in (1, 2):
                conn, reused = await self._acquire()
                try:
                    response = await conn.request(payload)
                except HttpConnectionError:
                    conn.close()
                    self._all.discard(conn)
                    # A kept-alive connection the server dropped while idle: the request
                    # never reached it, so sending it again is safe.
                    if reused and not conn.got_bytes and attempt == 1:
                        continue
                    raise
                except BaseException:  # timeout or cancel mid-response: the connection is spent
                    conn.close()
                    self._all.discard(conn)
                    raise
                self._release(conn)
                return _decoded(response)
        raise AssertionError("unreachable")

    async def _acquire(self) -> tuple[_Conn, bool]:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be stale
            if not conn.closed:
                return conn, True
            self._all.discard(conn)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    _Conn,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
        except (OSError, TimeoutError) as e:
            raise HttpConnectionError(
                f"cannot connect to {self.host}:{self.port}: {type(e).__name__}"
            ) from e
        self._all.add(conn)
        return conn, False

    def _release(self, conn: _Conn) -> None:
        if conn.closed:
            self._all.discard(conn)
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()


def _decoded(response: Response) -> Response:
    encoding = response.headers.get("content-encoding", "identity").lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            response.body = zlib.decompress(response.body, 16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            try:
                response.body = zlib.decompress(response.body)
            except zlib.error:  # raw deflate, as some servers send it
                response.body = zlib.decompress(response.body, -zlib.MAX_WBITS)
    except zlib.error as e:
        raise HttpConnectionError(f"undecodable {encoding} response body: {e}") from e
    return response
