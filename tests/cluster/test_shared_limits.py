"""Two gateway processes behind one client share the per-key rate limit exactly."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from chatbus_dev.testing import ServiceFactory
from tests.gateway.gw_agent_stub import StubAgent

LIMIT = 12  # requests per minute for the key


def create_key(redis_url: str, prefix: str) -> str:
    """An API key, made by the real CLI against the gateways' Redis."""
    env = {**os.environ, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    done = subprocess.run(
        [sys.executable, "-m", "chatbus_gateway.keys_cli", "create", "--tenant", "acme"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = re.search(r"key:\s+(\S+)", done.stdout)
    assert found, done.stdout + done.stderr
    return found.group(1)


@pytest.mark.slow
@pytest.mark.e2e
async def test_two_gateways_share_the_per_key_limit_exactly(
    service_factory: ServiceFactory, agent: StubAgent, redis_url: str, uid: str
) -> None:
    prefix = f"gwlimits:{uid}:"
    shared = {
        "CHATBUS_AUTH": "on",
        "CHATBUS_ADMIN_KEY": "admin-for-tests",
        "REDIS_PREFIX": prefix,
        "RATE_KEY_PER_MIN": str(LIMIT),
        # Only the key's limit binds: the others are off or far away.
        "RATE_IP_PER_MIN": "0",
        "RATE_USER_PER_MIN": "0",
        "RATE_SESSION_PER_MIN": "0",
        "JOBS_BUCKET": f"jobs_{uid}",
        "JOBS_STREAM": f"JOBS_{uid}",
        "JOBS_SUBJECT": f"test.{uid}.jobs",
    }
    gateways = [service_factory.make("chatbus_gateway", **shared) for _ in range(2)]
    await asyncio.gather(*(g.start() for g in gateways))
    keys = [await asyncio.to_thread(create_key, redis_url, prefix) for _ in range(2)]

    async def send(i: int, key: str, http: aiohttp.ClientSession) -> tuple[int, int, Any]:
        gw = gateways[i % 2]  # the client alternates between the two addresses
        body = {"message": f"hello {i}", "session_id": f"s{i}"}
        headers = {"Authorization": f"Bearer {key}"}
        async with http.post(f"{gw.url}/api/chat/{agent.agent}", json=body, headers=headers) as r:
            return i % 2, r.status, await r.json()

    async with aiohttp.ClientSession() as http:
        # One after another, alternating: the first LIMIT pass (half through each gateway),
        # every later one is refused by whichever gateway gets it.
        one_by_one = [await send(i, keys[0], http) for i in range(2 * LIMIT)]
        # All at once (three times the limit): still exactly LIMIT get through.
        burst = await asyncio.gather(*(send(i, keys[1], http) for i in range(3 * LIMIT)))
    assert [status for _, status, _ in one_by_one] == [200] * LIMIT + [429] * LIMIT
    assert [status for _, status, _ in burst].count(200) == LIMIT
    assert [status for _, status, _ in burst].count(429) == 2 * LIMIT
    for _, status, body in [*one_by_one, *burst]:
        if status == 429:
            assert body["error"]["type"] == "rate_limited"
            assert f"{LIMIT} per minute" in body["error"]["message"]
