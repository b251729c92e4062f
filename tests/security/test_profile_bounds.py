"""A profile is bounded in total, not only per request.

Each ``PATCH /api/users/{id}/profile`` took at most 50 facts, but every new fact name added to
the profile: 36 requests of 50 new names (about 1 MB) made it too large for one NATS message.
From then on every write of that profile failed with a 502 naming the exception, and the
profile (shown to every agent in every prompt of the user) stayed at its largest.
"""

from __future__ import annotations

import aiohttp
import pytest

from chatbus.contracts.memory import MAX_PROFILE_FACTS
from tests.security.conftest import Stack

pytestmark = pytest.mark.timeout(60)


async def _patch(
    http: aiohttp.ClientSession, stack: Stack, facts: dict[str, str | None]
) -> tuple[int, dict[str, object]]:
    url = f"{stack.url}/api/users/grower/profile"
    async with http.patch(url, json=facts, headers=stack.a.auth) as r:
        return r.status, await r.json()


async def test_a_full_profile_refuses_new_fact_names_but_takes_edits_and_removals(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    full = {f"fact_{i}": "v" * 500 for i in range(MAX_PROFILE_FACTS)}
    assert (await _patch(http, stack, full))[0] == 200

    for _ in range(3):  # what used to grow it request after request
        status, body = await _patch(http, stack, {"one_more": "x", "and_another": "y"})
        assert status == 422, body
        error = body["error"]
        assert isinstance(error, dict)
        assert f"at most {MAX_PROFILE_FACTS} facts" in error["message"]
        assert error["type"] == "invalid_request_error"

    status, body = await _patch(http, stack, {"fact_0": "changed"})  # an edit still works
    assert status == 200
    status, body = await _patch(http, stack, {"fact_1": None, "one_more": "x"})  # room first
    assert status == 200
    profile = body["profile"]
    assert isinstance(profile, dict)
    assert len(profile) == MAX_PROFILE_FACTS
    assert profile["fact_0"] == "changed" and profile["one_more"] == "x"
    assert "fact_1" not in profile
