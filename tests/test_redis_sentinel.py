"""Redis behind Sentinel: the link finds the master and follows a failover (real servers)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbus.redis_link import RedisConnectionError, RedisLink, ResponseError, parse_url
from chatbus_dev.servers import SentinelSet, start_redis_sentinel

log = logging.getLogger("tests.redis_sentinel")


def test_sentinel_urls() -> None:
    o = parse_url("redis+sentinel://app:s3cret@10.0.0.1:26379,[::1]:26380,sentinel-c/main/2")
    assert o["sentinels"] == [("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", 26379)]
    assert (o["master"], o["db"], o["username"], o["password"]) == ("main", 2, "app", "s3cret")
    with pytest.raises(ValueError, match="master"):
        parse_url("redis+sentinel://127.0.0.1:26379")


async def test_transactions_and_scan(redis_link: RedisLink, uid: str) -> None:
    key = f"tx:{uid}"
    assert await redis_link.transaction([("SET", key, 1), ("INCR", key), ("GET", key)]) == [
        b"OK",
        2,
        b"2",
    ]
    # A command Redis refuses inside the block: the others ran, the error is raised.
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await redis_link.transaction([("LPUSH", key, "x"), ("SET", f"{key}:b", "ran")])
    assert await redis_link.call("GET", f"{key}:b") == b"ran"
    # A block Redis refuses to queue runs nothing.
    with pytest.raises(ResponseError):
        await redis_link.transaction([("SET", f"{key}:c", "no"), ("NOSUCHCOMMAND",)])
    assert await redis_link.call("GET", f"{key}:c") is None
    for i in range(1200):
        await redis_link.call("SET", f"scan:{uid}:{i}", i)
    found = {k async for k in redis_link.scan(f"scan:{uid}:*", count=100)}
    assert len(found) == 1200


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    s = start_redis_sentinel(tmp_path)
    yield s
    s.stop()


@pytest.mark.slow
async def test_the_link_follows_a_sentinel_failover(sentinel_set: SentinelSet, uid: str) -> None:
    link = RedisLink(sentinel_set.url, connect_retry_s=30, reply_timeout_s=5)
    try:
        await link.call("SET", f"k:{uid}", "before")
        # Wait until the replica has it, as a production write with WAIT would.
        assert await link.call("WAIT", 1, 5000) == 1
        old_master = sentinel_set.master
        old_master.proc.kill()
        started = time.monotonic()
        while True:  # bounded by the link's connect_retry_s and this loop's own bound
            try:
                await link.call("SET", f"k:{uid}:after", "after")
                break
            except RedisConnectionError:
                assert time.monotonic() - started < 60, "no new master after 60 s"
                await asyncio.sleep(0.2)  # allowed: retry pacing while Sentinel fails over
        log.warning("writes resumed %.1f s after the master died", time.monotonic() - started)
        # The acknowledged, replicated write survived; the link now talks to the new master.
        assert await link.call("GET", f"k:{uid}") == b"before"
        assert (await link.call("ROLE"))[0] == b"master"
        assert await link.call("GET", f"k:{uid}:after") == b"after"
    finally:
        await link.close()
