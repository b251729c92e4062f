from collections.abc import AsyncIterator

import pytest_asyncio
import redis.asyncio as aioredis

pytest_plugins = ["chatbus_dev.testing", "tests.collab.collab_harness"]


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """redis-py, as an inspection client independent of the product's RedisLink (tests only)."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
