"""The probe corpus: hostile paths, queries, bodies and raw requests on every route.

Issue 10, defect 7 (and 8, 12): no input gets a 5xx; every error is the documented
``{"error": {message, type, code, param}}`` with ``code`` equal to the status.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from tests.security.conftest import Stack
from tests.security.probes import (
    BODIES,
    BODY_ROUTES,
    PATH_ROUTES,
    PATH_VALUES,
    QUERY_ROUTES,
    QUERY_VALUES,
    SMUGGLING,
    Answer,
    chunked_upload,
    problems,
    raw_request,
)


async def _send(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    data: bytes | None = None,
) -> Answer:
    what = f"{method} {url[:120]}"
    async with http.request(
        method, URL(url, encoded=True), headers=headers, data=data, allow_redirects=False
    ) as r:
        return Answer(what, r.status, await r.read())


async def _all(answers: list[Answer]) -> list[str]:
    return [p for a in answers for p in problems(a)]


async def test_hostile_paths_and_queries_get_4xx_in_the_error_shape(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    headers = {**stack.admin, "Content-Type": "application/json"}
    body = b'{"message": "hi", "session_id": "s"}'
    sends = [
        _send(http, method, stack.url + template.format(value), headers, body)
        for method, template in PATH_ROUTES
        for value in PATH_VALUES
    ]
    sends += [
        _send(
            http,
            method,
            f"{stack.url}{path.format(agent=stack.agent)}?{name}={value}",
            headers,
            body if method == "POST" else None,
        )
        for method, path, name in QUERY_ROUTES
        for value in QUERY_VALUES
    ]
    answers = []
    for i in range(0, len(sends), 16):  # bounded concurrency: a busy CI machine
        answers += await asyncio.gather(*sends[i : i + 16])
    # Unicode digits are never numbers: the audit's 502s.
    for a in answers:
        if "%C2%B2" in a.what and ("redrive" in a.what or "limit=" in a.what):
            assert a.status in (404, 422), a
    failures = await _all(answers)
    assert not failures, "\n".join(failures)


async def test_hostile_bodies_get_4xx_in_the_error_shape(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    answers = []
    for route in BODY_ROUTES:
        url = stack.url + route.format(agent=stack.agent)
        headers = {**stack.admin, "Content-Type": "application/json"}
        answers += await asyncio.gather(*(_send(http, "POST", url, headers, b) for b in BODIES))
    failures = await _all(answers)
    assert not failures, "\n".join(failures)
    deep = [a for a in answers if a.what.startswith("POST") and a.status == 400]
    assert len(deep) >= 2 * len(BODY_ROUTES) - 1  # both nestings refused on JSON routes


async def test_raw_smuggling_attempts_are_refused_in_the_error_shape(stack: Stack) -> None:
    url = URL(stack.url)
    assert url.host is not None and url.port is not None
    answers = [await raw_request(url.host, url.port, data) for data in SMUGGLING]
    assert all(400 <= a.status < 500 for a in answers), answers
    failures = await _all(answers)
    assert not failures, "\n".join(failures)


async def test_large_chunked_bodies_are_413_on_every_body_route(stack: Stack) -> None:
    url = URL(stack.url)
    assert url.host is not None and url.port is not None
    auth = {k: v for k, v in stack.admin.items()}
    answers = []
    for route in BODY_ROUTES[:-1]:
        path = route.format(agent=stack.agent)
        answers.append(await chunked_upload(url.host, url.port, path, auth, 1024 * 1024))
    # 100 MB: refused after the first 64 KB, not read to the end.
    answers.append(
        await chunked_upload(url.host, url.port, "/api/memory/search", auth, 100 * 1024 * 1024)
    )
    assert [a.status for a in answers] == [413] * len(answers), answers
    failures = await _all(answers)
    assert not failures, "\n".join(failures)
