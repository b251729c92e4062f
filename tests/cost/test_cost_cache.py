"""The response cache: same agent, model, prompt and tenant within the TTL -> the same reply."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from chatbus.agent.response_cache import NoCache, RedisResponseCache
from chatbus.redis_link import RedisLink

PROMPT = [
    {"role": "system", "content": "You are support."},
    {"role": "user", "content": "What are your opening hours?"},
]


def cache(link: RedisLink, uid: str, ttl_s: float = 300) -> RedisResponseCache:
    return RedisResponseCache(link, ttl_s=ttl_s, prefix=f"test:{uid}:resp:")


async def test_same_prompt_returns_the_cached_reply(redis_link: RedisLink, uid: str) -> None:
    c = cache(redis_link, uid)
    assert await c.get("support", "gpt-4o-mini", PROMPT) is None
    await c.put("support", "gpt-4o-mini", PROMPT, "9 to 5, Monday to Friday. 🕘")
    reordered = [{"content": m["content"], "role": m["role"]} for m in PROMPT]
    assert await c.get("support", "gpt-4o-mini", reordered) == "9 to 5, Monday to Friday. 🕘"


async def test_any_difference_is_a_miss(redis_link: RedisLink, uid: str) -> None:
    c = cache(redis_link, uid)
    await c.put("support", "gpt-4o-mini", PROMPT, "9 to 5", tenant_id="acme")
    other_question = [PROMPT[0], {"role": "user", "content": "What are your opening hours"}]
    assert await c.get("support", "gpt-4o-mini", PROMPT, tenant_id="acme") == "9 to 5"
    assert await c.get("sales", "gpt-4o-mini", PROMPT, tenant_id="acme") is None
    assert await c.get("support", "gpt-4o", PROMPT, tenant_id="acme") is None
    assert await c.get("support", "gpt-4o-mini", other_question, tenant_id="acme") is None
    assert await c.get("support", "gpt-4o-mini", PROMPT, tenant_id="globex") is None
    assert await c.get("support", "gpt-4o-mini", PROMPT) is None  # the default tenant


async def test_entries_expire_after_the_ttl(
    redis: aioredis.Redis, redis_link: RedisLink, uid: str
) -> None:
    c = cache(redis_link, uid, ttl_s=300)
    await c.put("support", "gpt-4o-mini", PROMPT, "9 to 5")
    pttl = await redis.pttl(c.key("support", "gpt-4o-mini", PROMPT, "default"))
    assert 299_000 < pttl <= 300_000


async def test_empty_replies_are_not_cached_and_nocache_never_hits(
    redis_link: RedisLink, uid: str
) -> None:
    c = cache(redis_link, uid)
    await c.put("support", "gpt-4o-mini", PROMPT, "")
    assert await c.get("support", "gpt-4o-mini", PROMPT) is None
    off = NoCache()
    await off.put("support", "gpt-4o-mini", PROMPT, "9 to 5")
    assert await off.get("support", "gpt-4o-mini", PROMPT) is None


async def test_redis_down_is_a_miss_not_an_error(uid: str) -> None:
    dead = RedisLink("redis://127.0.0.1:1", connect_timeout_s=0.2)
    c = RedisResponseCache(dead, timeout_s=0.3)
    started = time.monotonic()
    await c.put("support", "gpt-4o-mini", PROMPT, "9 to 5")
    assert await c.get("support", "gpt-4o-mini", PROMPT) is None
    assert time.monotonic() - started < 1.5  # a dead Redis never stalls a chat
    await dead.close()
