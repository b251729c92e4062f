"""Session and user ids sent in a body or header obey the path ids' rule.

They used to be any string: a chat in session ``"s\\u0000x"`` (or ``"s\\nx"``, ``".."``) was
answered and stored, yet ``GET``/``DELETE /api/sessions/{id}`` refuse such an id (404), so the
session could be neither read nor forgotten. On ``/v1/chat/completions`` the session id is
echoed in the ``X-Session-Id`` header, and one with a control character made the server drop
the connection without any answer.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.security.conftest import Stack
from tests.security.probes import Answer, problems

pytestmark = pytest.mark.timeout(90)

UNADDRESSABLE = ["s\u0000x", "s\nx", "s\x7f", "s\ufffd", ".", "..", "s{x}"]


async def _post(
    http: aiohttp.ClientSession,
    stack: Stack,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> Answer:
    what = f"POST {path} {json.dumps(body)[:80]} {headers or ''}"
    async with http.post(
        stack.url + path, json=body, headers={**stack.a.auth, **(headers or {})}
    ) as r:
        return Answer(what, r.status, await r.read())


def _refused(answer: Answer, field: str) -> None:
    assert answer.status == 422, (answer.what, answer.status, answer.body[:200])
    assert not problems(answer)
    assert json.loads(answer.body)["error"]["param"] == field


@pytest.mark.parametrize("bad", UNADDRESSABLE)
async def test_an_id_no_path_can_name_is_refused_wherever_it_is_sent(
    stack: Stack, http: aiohttp.ClientSession, bad: str
) -> None:
    chat = f"/api/chat/{stack.agent}"
    _refused(await _post(http, stack, chat, {"message": "hi", "session_id": bad}), "session_id")
    body = {"message": "hi", "session_id": "s1", "user_id": bad}
    _refused(await _post(http, stack, chat, body), "user_id")
    _refused(await _post(http, stack, chat + "?mode=async", body), "user_id")

    conversation = {"model": stack.agent, "messages": [{"role": "user", "content": "hi"}]}
    for extra in ({"session_id": bad}, {"user": bad}):
        field = next(iter(extra))
        _refused(await _post(http, stack, "/v1/chat/completions", conversation | extra), field)

    imported = {"messages": [{"role": "user", "content": "hi"}], "user_id": bad}
    _refused(await _post(http, stack, "/api/sessions/s1/messages", imported), "user_id")
    search = {"session_id": bad, "query": "hi"}
    _refused(await _post(http, stack, "/api/memory/search", search), "session_id")


async def test_an_odd_session_header_is_refused_not_a_dropped_connection(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    host, port = stack.url.removeprefix("http://").split(":")
    body = json.dumps({"model": stack.agent, "messages": [{"role": "user", "content": "hi"}]})
    auth = stack.a.auth["Authorization"]
    from tests.security.probes import raw_request

    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    for value in (b"s\x7fx", b"s\x01x"):
        raw = head.encode() + b"X-Session-Id: " + value + b"\r\n\r\n" + body.encode()
        answer = await raw_request(host, int(port), raw)
        assert answer.status in (400, 422), answer
        assert not problems(answer)


@pytest.mark.parametrize("odd", ["a/b", "\uff53\u0131", "s\u202ex", " x ", "s:*>[]"])
async def test_a_printable_id_is_taken_and_can_be_forgotten(
    stack: Stack, http: aiohttp.ClientSession, odd: str
) -> None:
    chat = f"/api/chat/{stack.agent}"
    answer = await _post(http, stack, chat, {"message": "hi", "session_id": odd, "user_id": odd})
    assert answer.status == 200, answer
    for kind in ("sessions", "users"):
        url = f"{stack.url}/api/{kind}/{quote(odd, safe='')}"
        async with http.delete(url, headers=stack.a.auth) as r:
            assert r.status == 200, (kind, await r.text())
            assert (await r.json()).get(kind[:-1] + "_id") == odd
