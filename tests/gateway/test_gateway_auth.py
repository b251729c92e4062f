"""API keys: created and revoked by the CLI, stored hashed, tenants kept apart."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis

from chatbus_dev.testing import ServiceFactory
from chatbus_gateway.keys_cli import main as keys_main
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import Callbacks, StartGateway

ADMIN = "admin-secret-for-tests"


async def create_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tenant: str
) -> tuple[str, str]:
    assert await asyncio.to_thread(keys_main, ["create", "--tenant", tenant]) == 0
    out = capsys.readouterr().out
    key = re.search(r"key:\s+(\S+)", out)
    key_id = re.search(r"key_id:\s+(\S+)", out)
    assert key and key_id
    return key.group(1), key_id.group(1)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, uid: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_PREFIX", f"gwtest:{uid}:")


@pytest.mark.usefixtures("cli_env")
async def test_keys_tenants_and_revocation(
    start_gateway: StartGateway,
    agent: StubAgent,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    uid: str,
) -> None:
    gw = await start_gateway(auth="on", admin_key=ADMIN, key_cache_s=0)
    key_a, id_a = await create_key(monkeypatch, capsys, "tenant-a")
    key_b, _ = await create_key(monkeypatch, capsys, "tenant-b")
    url = f"{gw.url}/api/chat/{agent.agent}"
    body = {"message": "my secret is 42", "session_id": "shared-session"}

    async with http.post(url, json=body) as r:
        assert r.status == 401 and "Authorization" in (await r.json())["error"]["message"]
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    async with http.post(url, json=body, headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401

    for key in (key_a, key_b):
        async with http.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200, await r.text()
    # The tenant travels with the message, and scopes the history the agent keeps.
    assert [r.tenant_id for r in agent.seen] == ["tenant-a", "tenant-b"]
    assert ("tenant-b", "shared-session") in agent.history
    assert len(agent.history[("tenant-b", "shared-session")]) == 2  # not A's turns too

    # Only a hash of each key is stored.
    assert await redis.exists(f"gwtest:{uid}:apikey:{hashlib.sha256(key_a.encode()).hexdigest()}")
    async for name in redis.scan_iter(match=f"gwtest:{uid}:*"):
        assert key_a.encode() not in name
        if await redis.type(name) == b"hash":
            assert key_a.encode() not in b"".join((await redis.hgetall(name)).values())

    # Usage: a tenant sees only its own; the admin key sees any tenant.
    async with http.get(
        f"{gw.url}/api/usage?tenant=tenant-b", headers={"Authorization": f"Bearer {key_a}"}
    ) as r:
        assert r.status == 403
    async with http.get(
        f"{gw.url}/api/admin/dead-letters", headers={"Authorization": f"Bearer {key_a}"}
    ) as r:
        assert r.status == 403
    async with http.get(
        f"{gw.url}/api/admin/dead-letters", headers={"Authorization": f"Bearer {ADMIN}"}
    ) as r:
        assert r.status == 200

    # The OpenAI SDK with a chatbus key.
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key_a, max_retries=0)
    done = await client.chat.completions.create(
        model=agent.agent, messages=[{"role": "user", "content": "hi"}]
    )
    assert done.choices[0].message.content
    assert agent.seen[-1].tenant_id == "tenant-a"

    assert await asyncio.to_thread(keys_main, ["list"]) == 0
    listed = capsys.readouterr().out
    assert id_a in listed and "tenant-a" in listed and key_a not in listed
    assert await asyncio.to_thread(keys_main, ["revoke", id_a]) == 0
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await client.chat.completions.create(
            model=agent.agent, messages=[{"role": "user", "content": "hi"}]
        )
    await client.close()


@pytest.mark.usefixtures("cli_env")
async def test_tenant_cannot_read_another_tenants_job(
    start_gateway: StartGateway,
    agent: StubAgent,
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gw = await start_gateway(auth="on", admin_key=ADMIN)
    key_a, _ = await create_key(monkeypatch, capsys, "tenant-a")
    key_b, _ = await create_key(monkeypatch, capsys, "tenant-b")
    async with http.post(
        f"{gw.url}/api/chat/{agent.agent}?mode=async",
        json={"message": "private", "session_id": "s", "callback_url": callbacks.url},
        headers={"Authorization": f"Bearer {key_a}"},
    ) as r:
        assert r.status == 202
        job_id = (await r.json())["job_id"]
    assert (await callbacks.next())["status"] == "done"
    async with http.get(
        f"{gw.url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {key_b}"}
    ) as r:
        assert r.status == 404
    async with http.get(
        f"{gw.url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {key_a}"}
    ) as r:
        assert r.status == 200


@pytest.mark.e2e
@pytest.mark.usefixtures("cli_env")
async def test_tenant_cannot_read_another_tenants_history(
    start_gateway: StartGateway,
    service_factory: ServiceFactory,
    fake_llm: tuple[Any, str],
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    uid: str,
) -> None:
    await service_factory.start(
        "chatbus_memory", OPENAI_BASE_URL=fake_llm[1], OPENAI_API_KEY="test"
    )
    gw = await start_gateway(auth="on", admin_key=ADMIN)
    key_a, _ = await create_key(monkeypatch, capsys, "tenant-a")
    key_b, _ = await create_key(monkeypatch, capsys, "tenant-b")
    url = f"{gw.url}/api/sessions/s-{uid}/messages"
    secret = [{"role": "user", "content": "the vault code is 7391"}]
    async with http.post(url, json=secret, headers={"Authorization": f"Bearer {key_a}"}) as r:
        assert r.status == 201, await r.text()
    async with http.get(url, headers={"Authorization": f"Bearer {key_b}"}) as r:
        assert r.status in (200, 404)
        assert "7391" not in await r.text()
    async with http.get(url, headers={"Authorization": f"Bearer {key_a}"}) as r:
        assert r.status == 200 and "7391" in await r.text()
