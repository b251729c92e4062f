"""The multiplexed Redis connection of the message path, against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from chatbus import deadline
from chatbus.redis_link import (
    NoScriptError,
    RedisConnectionError,
    RedisError,
    RedisLink,
    RedisTimeoutError,
    ResponseError,
)
from chatbus_dev.servers import start_redis


async def test_commands_batches_and_errors(redis_link: RedisLink, uid: str) -> None:
    key = f"link:{uid}"
    assert await redis_link.call("SET", key, "héllo", "PX", 60_000) == b"OK"
    assert await redis_link.call("GET", key) == "héllo".encode()
    assert await redis_link.call("GET", f"{key}:missing") is None
    replies = await redis_link.batch(
        [("RPUSH", f"{key}:l", b"a", "b", 3, 4.5), ("LRANGE", f"{key}:l", 0, -1)]
    )
    assert replies == [4, [b"a", b"b", b"3", b"4.5"]]
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await redis_link.call("LPUSH", key, "x")
    # In a batch every command still runs; the first error is raised once all replied.
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await redis_link.batch([("LPUSH", key, "x"), ("SET", f"{key}:after", "ran")])
    assert await redis_link.call("GET", f"{key}:after") == b"ran"
    # The connection is still in step after the errors.
    assert await redis_link.call("INCR", f"{key}:n") == 1


async def test_concurrent_callers_each_get_their_own_reply(redis_link: RedisLink, uid: str) -> None:
    async def one(i: int) -> bytes:
        await redis_link.call("SET", f"link:{uid}:{i}", f"value {i}")
        return bytes(await redis_link.call("GET", f"link:{uid}:{i}"))

    got = await asyncio.gather(*(one(i) for i in range(500)))
    assert got == [f"value {i}".encode() for i in range(500)]


async def test_a_cancelled_caller_does_not_shift_the_replies(
    redis_link: RedisLink, uid: str
) -> None:
    await redis_link.call("SET", f"link:{uid}:a", "A")
    await redis_link.call("SET", f"link:{uid}:b", "B")
    first = asyncio.ensure_future(redis_link.call("GET", f"link:{uid}:a"))
    second = asyncio.ensure_future(redis_link.call("GET", f"link:{uid}:b"))
    await asyncio.sleep(0)  # allowed: one loop turn, so both commands are queued
    first.cancel()
    assert await second == b"B"
    assert await redis_link.call("GET", f"link:{uid}:a") == b"A"


async def test_scripts_load_themselves_again_after_a_flush(
    redis_link: RedisLink, redis: aioredis.Redis, uid: str
) -> None:
    script = redis_link.script("return {KEYS[1], ARGV[1] + 1}")
    assert await script(keys=[f"k:{uid}"], args=[41]) == [f"k:{uid}".encode(), 42]
    await redis.script_flush()
    assert await script(keys=[f"k:{uid}"], args=[1]) == [f"k:{uid}".encode(), 2]


async def test_a_dropped_connection_is_reopened(
    redis_link: RedisLink, redis: aioredis.Redis
) -> None:
    client_id = await redis_link.call("CLIENT", "ID")
    await redis.client_kill_filter(_id=client_id)
    try:  # the kill may or may not have been noticed before this command went out
        await redis_link.call("PING")
    except RedisConnectionError:
        pass
    assert await redis_link.call("PING") == b"PONG"
    assert await redis_link.call("CLIENT", "ID") != client_id


async def test_database_and_credentials_from_the_url(
    redis_url: str, redis: aioredis.Redis, uid: str
) -> None:
    user, password = f"link-{uid}", f"secret-{uid}"
    await redis.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys="*", commands=["+@all"]
    )
    host = urlsplit(redis_url).netloc
    link = RedisLink(f"redis://{user}:{password}@{host}/3")
    try:
        await link.call("SET", f"db3:{uid}", "here")
        db3 = aioredis.Redis.from_url(f"redis://{host}/3")
        assert await db3.get(f"db3:{uid}") == b"here"
        assert await redis.get(f"db3:{uid}") is None
        await db3.aclose()
    finally:
        await link.close()
        await redis.acl_deluser(user)
    wrong = RedisLink(f"redis://{user}x:nope@{host}/0")
    with pytest.raises(RedisConnectionError, match="AUTH"):
        await wrong.call("PING")
    await wrong.close()


async def test_nothing_listening_fails_fast() -> None:
    link = RedisLink("redis://127.0.0.1:1", connect_timeout_s=0.5)
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await link.call("PING")
    await link.close()


@pytest_asyncio.fixture
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections, reads commands, never answers (a hung Redis)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}"
    server.close()


async def test_a_silent_server_times_out_instead_of_hanging(silent_server: str) -> None:
    link = RedisLink(silent_server, reply_timeout_s=0.4)
    with pytest.raises(RedisTimeoutError, match="no reply"):
        await asyncio.wait_for(link.call("PING"), timeout=5)
    await link.close()


def test_it_runs_on_uvloop_as_the_services_do(redis_url: str, uid: str) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> list[object]:
        link = RedisLink(redis_url)
        try:
            await link.call("SET", f"uv:{uid}", "1")
            script = link.script("return redis.call('INCR', KEYS[1])")
            return [*await link.batch([("GET", f"uv:{uid}")]), await script(keys=[f"uv:{uid}"])]
        finally:
            await link.close()

    assert uvloop.run(scenario()) == [b"1", 2]


async def test_a_restarting_redis_is_waited_for() -> None:
    """Commands sent while Redis restarts wait for it (within connect_retry_s), not fail."""
    first = await asyncio.to_thread(start_redis)
    port = int(first.url.rsplit(":", 1)[1].split("/")[0])
    link = RedisLink(first.url, connect_retry_s=10.0)
    second = None
    try:
        assert await link.call("SET", "k", "before") == b"OK"
        await asyncio.to_thread(first.stop)
        assert link._proto is not None
        await asyncio.wait_for(link._proto.closed.wait(), 5)  # the link saw it go
        waiting = asyncio.ensure_future(link.call("PING"))  # refused: retried meanwhile
        second = await asyncio.to_thread(start_redis, port)
        assert await asyncio.wait_for(waiting, 10) == b"PONG"
    finally:
        await link.close()
        if second is not None:
            await asyncio.to_thread(second.stop)


async def test_a_lost_redis_is_waited_for_within_the_messages_deadline() -> None:
    """Once connected, a lost Redis is waited for (a restart, a failover) by default; a
    command of a message whose deadline comes first gives up then, with a clear error."""
    first = await asyncio.to_thread(start_redis)
    port = int(first.url.rsplit(":", 1)[1].split("/")[0])
    link = RedisLink(first.url)  # the defaults: outage_wait_s covers a failover
    second = None
    try:
        assert await link.call("PING") == b"PONG"
        await asyncio.to_thread(first.stop)
        assert link._proto is not None
        await asyncio.wait_for(link._proto.closed.wait(), 5)
        with deadline.bound(deadline.after(1.0)):
            hurried = asyncio.ensure_future(link.call("PING"))
            # Given up before the deadline (its margin left to answer), with the link's error.
            with pytest.raises(RedisConnectionError, match="deadline"):
                await asyncio.wait_for(hurried, 2)
        patient = asyncio.ensure_future(link.call("PING"))  # no deadline: outage_wait_s
        second = await asyncio.to_thread(start_redis, port)
        assert await asyncio.wait_for(patient, 10) == b"PONG"
    finally:
        await link.close()
        if second is not None:
            await asyncio.to_thread(second.stop)


def test_errors_are_the_links_own_and_catchable_as_builtins() -> None:
    """The product imports no redis-py: the link's errors are its own, with the meanings
    callers rely on (an outage is a ConnectionError, a silent server also a TimeoutError)."""
    assert issubclass(RedisTimeoutError, RedisConnectionError)
    assert issubclass(RedisTimeoutError, TimeoutError)
    assert issubclass(RedisConnectionError, ConnectionError)
    assert issubclass(NoScriptError, ResponseError)
    assert all(issubclass(e, RedisError) for e in (RedisConnectionError, ResponseError))
