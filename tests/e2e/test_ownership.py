"""Each service's Redis user reaches only its own keys: crossing into another's is NOPERM.

The e2e stack starts every service with these users (tests/e2e/conftest.py), so any service
code touching another owner's keys fails the suite.
"""

from __future__ import annotations

import pytest

from chatbus.redis_link import RedisLink, ResponseError
from tests.e2e.conftest import OWNERS, redis_users


async def test_a_service_using_another_prefix_gets_noperm(redis_url: str, uid: str) -> None:
    users = await redis_users(redis_url)
    prefixes = {module: prefix for module, (_, prefix) in OWNERS.items()}
    for module, url in users.items():
        link = RedisLink(url)
        try:
            own = f"{prefixes[module]}test:{uid}"
            assert await link.call("SET", own, "1", "EX", 60) == b"OK"
            assert await link.call("EVAL", "return redis.call('GET', KEYS[1])", 1, own) == b"1"
            for prefix in set(prefixes.values()):
                if prefix == prefixes[module]:
                    continue
                with pytest.raises(ResponseError, match="NOPERM"):
                    await link.call("GET", f"{prefix}test:{uid}")
                with pytest.raises(ResponseError, match="NOPERM"):  # nor from a script
                    await link.call("EVAL", "return redis.call('DEL', KEYS[1])", 1, f"{prefix}x")
            with pytest.raises(ResponseError, match="NOPERM"):
                await link.call("FLUSHALL")  # dangerous commands: nobody
        finally:
            await link.close()
