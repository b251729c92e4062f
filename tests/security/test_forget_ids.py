"""Forgetting one id forgets that id only: glob characters (``*``, ``?``, ``[``) and ``:`` in a
session or user id never reach other users' or sessions' data.

The agent runtime finds a user's records and drafts by key pattern; an id taken into a pattern
as it is made ``DELETE /api/users/*`` erase every user's tickets in the tenant, and forgetting
session ``abc`` erase the records of user ``x:session:abc``.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest

from chatbus.agent.drafts import Drafts
from chatbus.agent.records import Caller
from chatbus.redis_link import RedisLink
from tests.security.conftest import Stack

pytestmark = pytest.mark.timeout(60)


async def _tickets(http: aiohttp.ClientSession, stack: Stack) -> set[str]:
    async with http.get(f"{stack.url}/api/tickets", headers=stack.a.auth) as r:
        assert r.status == 200
        return {t["id"] for t in (await r.json())["tickets"]}


@pytest.mark.parametrize(
    ("kind", "forgotten"),
    [("users", "*"), ("users", "b?b"), ("users", "[a-z]*"), ("sessions", "*"), ("sessions", "abc")],
)
async def test_forgetting_an_id_with_pattern_characters_forgets_only_that_id(
    stack: Stack, http: aiohttp.ClientSession, redis_link: RedisLink, kind: str, forgotten: str
) -> None:
    tenant = stack.a.name
    await stack.records.put(tenant, "ticket", "T-bob", {"title": "bob's"}, user_id="bob")
    await stack.records.put(tenant, "ticket", "T-anon", {"title": "anon"}, session_id="s-anon")
    await stack.records.put(tenant, "ticket", "T-colon", {"title": "x"}, user_id="x:session:abc")
    await stack.records.put(tenant, "ticket", "T-mine", {"title": "mine"}, user_id=forgotten)
    draft = Drafts.key(Caller(tenant, "s-bob", "bob"), "ABCDEFGH")
    await redis_link.call("SET", draft, "{}", "EX", 60)
    assert await _tickets(http, stack) == {"T-bob", "T-anon", "T-colon", "T-mine"}

    url = f"{stack.url}/api/{kind}/{quote(forgotten, safe='')}"
    async with http.delete(url, headers=stack.a.auth) as r:
        assert r.status == 200, await r.text()

    left = await _tickets(http, stack)
    gone = {"T-mine"} if kind == "users" else set()
    assert left == {"T-bob", "T-anon", "T-colon", "T-mine"} - gone
    assert await redis_link.call("EXISTS", draft) == 1  # bob's draft is bob's
