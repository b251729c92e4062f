"""Header values that are not UTF-8 get a 400 in the documented shape, never a 5xx.

aiohttp keeps undecodable header bytes as lone surrogates. Encoding one again (hashing the
bearer key, the Idempotency-Key, putting X-Session-Id into a bus message) raised, and the
gateway answered 502 with a traceback in its log.
"""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import Stack
from tests.security.probes import problems, raw_request

pytestmark = pytest.mark.timeout(60)

NOT_UTF8 = [b"\xff\xfe", b"\xed\xa0\x80", b"ok\xc3"]


def _request(path: str, headers: list[bytes], body: bytes = b"") -> bytes:
    method = b"POST" if body else b"GET"
    head = [method + b" " + path.encode() + b" HTTP/1.1", b"Host: x", *headers]
    if body:
        head += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.mark.parametrize("raw", NOT_UTF8)
async def test_undecodable_bytes_in_a_header_the_gateway_reads_are_a_400(
    stack: Stack, raw: bytes
) -> None:
    host, port = stack.url.removeprefix("http://").split(":")
    key = stack.a.auth["Authorization"].encode()
    chat = json.dumps({"message": "hi", "session_id": "s"}).encode()
    completion = json.dumps(
        {"model": stack.agent, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    cases = [
        ("/api/tickets", [b"Authorization: Bearer " + raw], b""),
        ("/v1/models", [b"Authorization: Bearer cbk_" + raw], b""),
        (f"/api/chat/{stack.agent}", [b"Authorization: " + key, b"Idempotency-Key: " + raw], chat),
        ("/v1/chat/completions", [b"Authorization: " + key, b"X-Session-Id: s" + raw], completion),
    ]
    for path, headers, body in cases:
        answer = await raw_request(host, int(port), _request(path, headers, body))
        assert answer.status == 400, (path, headers, answer)
        assert not problems(answer)


async def test_utf8_text_in_those_headers_is_taken(stack: Stack) -> None:
    host, port = stack.url.removeprefix("http://").split(":")
    completion = json.dumps(
        {"model": stack.agent, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    headers = [b"Authorization: " + stack.a.auth["Authorization"].encode()]
    headers += [b"X-Session-Id: caf\xc3\xa9", b"Idempotency-Key: cl\xc3\xa9-1"]
    answer = await raw_request(
        host, int(port), _request("/v1/chat/completions", headers, completion)
    )
    assert answer.status == 200, answer
