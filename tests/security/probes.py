"""The hostile inputs of the probe corpus, and the check every answer must pass.

Bounded on purpose (a few hundred requests): each class of input the audit found a 5xx with,
on every route that takes that kind of input.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

# Path parameter values, already percent-encoded as a client would put them on the wire.
PATH_VALUES = [
    "%C2%B2",  # a Unicode digit: isdigit() yes, int() no
    "%F0%9D%9F%9A",  # MATHEMATICAL DOUBLE-STRUCK DIGIT TWO
    "f" * 5000,  # a 5,000-character hex id
    "job-" + "f" * 5000 + "-x",
    "9" * 40,
    "-1",
    "%00",
    "a%00b",
    "%FF%FE",  # not UTF-8
    "%ED%A0%80",  # an encoded lone surrogate
    "a.b.c",  # NATS subject characters
    "*",
    "%3E",
    "a%20b",
    "..%2F..%2Fetc%2Fpasswd",
    "%0D%0AX-Injected:%201",
    "%E2%80%AE",
]

# Routes and the path template each hostile value goes into.
PATH_ROUTES = [
    ("POST", "/api/chat/{}"),
    ("GET", "/api/jobs/{}"),
    ("POST", "/api/admin/dead-letters/{}/redrive"),
    ("GET", "/api/sessions/{}/messages"),
    ("POST", "/api/sessions/{}/messages"),
    ("DELETE", "/api/sessions/{}"),
    ("DELETE", "/api/users/{}"),
    ("GET", "/api/tickets/{}"),
    ("GET", "/api/orders/{}"),
]

QUERY_VALUES = [
    "%C2%B2",
    "-1",
    "0",
    "1e3",
    "99999999999999999999999999",
    "%00",
    "%FF",
    "",
    "nan",
    "1e999",
    "a" * 3000,
]

QUERY_ROUTES = [
    ("GET", "/api/admin/dead-letters", "limit"),
    ("GET", "/api/tickets", "limit"),
    ("GET", "/api/invoices", "session_id"),
    ("GET", "/api/leads", "user_id"),
    ("GET", "/api/sessions/s1/messages", "limit"),
    ("GET", "/api/sessions/s1/messages", "before"),
    ("GET", "/api/usage", "from"),
    ("GET", "/api/usage", "to"),
    ("GET", "/api/usage", "group_by"),
    ("GET", "/api/usage", "tenant"),
    ("POST", "/api/chat/{agent}", "mode"),
]

DEEP = 2000
BODIES: list[bytes] = [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b'{"message": "' + b"\xff\xfe" + b'", "session_id": "s"}',  # invalid UTF-8
    b'{"message": "a\\u0000b", "session_id": "s\\u0000", "query": "\\u0000"}',  # NUL
    b'{"message": "\\ud800", "session_id": "s", "query": "\\udfff"}',  # lone surrogates
    b'{"message": NaN, "session_id": "s"}',
    b'{"message": "hi", "session_id": "s", "limit": 1e999}',
    b'{"message": "hi", "session_id": "s", "limit": 123456789012345678901234567890}',
    b'{"message": 5, "session_id": ["s"], "query": {}, "messages": "x"}',
    b"[1, 2, 3]",
    b"null",
    b"",
    b'"just a string"',
    b'{"messages": [{"role": "user", "content": "hi", "created_at": false}]}',
    b'{"messages": [{"role": "user", "content": "hi", "created_at": 1e308}]}',
]

BODY_ROUTES = [
    "/api/chat/{agent}",
    "/api/chat/{agent}?mode=async",
    "/v1/chat/completions",
    "/api/sessions/s1/messages",
    "/api/memory/search",
    "/api/admin/dead-letters/1/redrive",
]

# Raw requests a smuggling or confused front end might send.
SMUGGLING = [
    b"POST /api/memory/search HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /api/memory/search HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Content-Length: 5\r\n\r\n{}{}",
    b"POST /api/memory/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n"
    b"\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /api/memory/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\n{}\r\n0\r\n\r\n",
    b"POST /api/memory/search HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /api/agents HTTP/1.1\r\nHost: x\r\n X-Folded: continued\r\n\r\n",
    b"GET /api/agents HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
    b"GET /api/agents HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /api/agents\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
]

ERROR_FIELDS = {"message", "type", "code", "param"}


@dataclass
class Answer:
    what: str
    status: int
    body: bytes


def problems(answer: Answer) -> list[str]:
    """What is wrong with an answer: a 5xx, or an error that is not in the documented shape."""
    where = f"{answer.what} -> {answer.status}"
    if answer.status >= 500:
        return [f"{where}: server error {answer.body[:200]!r}"]
    if answer.status < 400:
        return []
    try:
        error = json.loads(answer.body)["error"]
    except (ValueError, KeyError, TypeError):
        return [f"{where}: not the documented error body: {answer.body[:200]!r}"]
    if not isinstance(error, dict) or set(error) != ERROR_FIELDS:
        return [f"{where}: error fields {error!r}"]
    if error["code"] != answer.status:
        return [f"{where}: error code {error['code']} != status"]
    return []


async def raw_request(host: str, port: int, data: bytes, timeout: float = 20) -> Answer:
    """Send bytes as they are; the status and body of the first answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_answer(reader, repr(data[:60]), timeout)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader, what: str, timeout: float) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head.split(b" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
    }
    length = int(headers.get(b"content-length", b"0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
    return Answer(what, status, body)


async def chunked_upload(
    host: str, port: int, path: str, auth: dict[str, str], total: int, timeout: float = 60
) -> Answer:
    """POST ``total`` bytes as a chunked body, until the gateway answers (or reads it all)."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in auth.items())
    head += "Content-Type: application/json\r\n\r\n"
    piece = b'"' + b"a" * (64 * 1024 - 2) + b'"'
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    try:
        writer.write(head.encode())
        sent = 0
        answer = asyncio.ensure_future(read_answer(reader, f"chunked {total} B {path}", timeout))
        try:
            while sent < total and not answer.done():
                writer.write(chunk)
                await writer.drain()
                sent += len(piece)
            if not answer.done():
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except ConnectionError:
            pass  # the gateway answered and closed before the whole body was sent
        return await answer
    finally:
        writer.close()


def payload(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()
