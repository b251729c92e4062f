"""The bus: typed request/reply, queue groups, errors that reach the caller."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from nats.aio.msg import Msg

from chatbus.bus import Bus
from chatbus.contracts.base import Message
from chatbus.errors import NoResponders, RemoteError


class Ping(Message):
    subject: ClassVar[str] = "test.ping.v1"
    n: int


class Pong(Message):
    n: int
    by: str = ""


async def test_request_reply_round_trip(bus: Bus, uid: str) -> None:
    async def double(msg: Ping) -> Pong:
        return Pong(n=msg.n * 2)

    await bus.subscribe(f"t.{uid}", Ping, double)
    reply = await bus.request(Ping(n=21), Pong, f"t.{uid}", timeout=2)
    assert reply.n == 42


async def test_no_responders_fails_fast(bus: Bus, uid: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NoResponders):
        await bus.request(Ping(n=1), Pong, f"nobody.{uid}", timeout=5)
    assert loop.time() - started < 1.0


async def test_malformed_message_gets_error_reply_and_service_survives(bus: Bus, uid: str) -> None:
    async def double(msg: Ping) -> Pong:
        return Pong(n=msg.n * 2)

    await bus.subscribe(f"t.{uid}", Ping, double)
    resp = await bus.nc.request(f"t.{uid}", b'{"n": "not a number"}', timeout=2)
    assert b"invalid" in resp.data and b"n" in resp.data
    # still serving
    assert (await bus.request(Ping(n=2), Pong, f"t.{uid}", timeout=2)).n == 4


async def test_handler_exception_becomes_error_reply(bus: Bus, uid: str) -> None:
    async def broken(msg: Ping) -> Pong:
        if msg.n < 0:
            raise RemoteError("not_found", "no such thing")
        raise ValueError("boom")

    await bus.subscribe(f"t.{uid}", Ping, broken)
    with pytest.raises(RemoteError) as e:
        await bus.request(Ping(n=-1), Pong, f"t.{uid}", timeout=2)
    assert e.value.code == "not_found"
    with pytest.raises(RemoteError) as e2:
        await bus.request(Ping(n=1), Pong, f"t.{uid}", timeout=2)
    assert e2.value.code == "internal"


async def test_queue_group_splits_work_without_duplicates(nats_url: str, uid: str) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}
    replicas = [await Bus.connect(nats_url, service=name) for name in seen]

    def make(name: str):  # type: ignore[no-untyped-def]
        async def handle(msg: Ping) -> Pong:
            seen[name].append(msg.n)
            return Pong(n=msg.n, by=name)

        return handle

    for name, b in zip(seen, replicas, strict=True):
        await b.subscribe(f"q.{uid}", Ping, make(name), queue="workers")
    async with asyncio.TaskGroup() as tg:
        client = replicas[0]
        tasks = [tg.create_task(client.request(Ping(n=i), Pong, f"q.{uid}")) for i in range(200)]
    assert sorted(t.result().n for t in tasks) == list(range(200))
    assert sorted(seen["a"] + seen["b"]) == list(range(200))
    assert seen["a"] and seen["b"]
    for b in replicas:
        await b.drain(timeout=5)


async def test_listen_collects_answers_sent_to_its_inbox_until_left(bus: Bus, uid: str) -> None:
    got: list[bytes] = []
    two = asyncio.Event()

    def on_data(data: bytes) -> None:
        got.append(data)
        if len(got) == 2:
            two.set()

    async with bus.listen(on_data) as inbox:
        await bus.publish(Ping(n=1), inbox)
        await bus.wake(inbox)
        await asyncio.wait_for(two.wait(), 5)
    assert got == [Ping(n=1).to_bytes(), b""]


async def test_a_handler_passes_its_callers_trace_on_to_every_hop(bus: Bus, uid: str) -> None:
    """No SDK records spans here (as in every service without an exporter): the trace id the
    caller sent still reaches what the handler sends on, with the caller's flags and state."""
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    onward: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def seen(raw: Msg) -> None:
        onward.set_result(dict(raw.headers or {}))

    await bus.nc.subscribe(f"t.{uid}.next", cb=seen)

    async def relay(msg: Ping) -> Pong:
        await bus.publish(msg, f"t.{uid}.next")
        return Pong(n=msg.n)

    await bus.subscribe(f"t.{uid}", Ping, relay)
    headers = {"traceparent": caller, "tracestate": "vendor=1"}
    await bus.request(Ping(n=1), Pong, f"t.{uid}", timeout=2, headers=headers)
    got = await asyncio.wait_for(onward, 2)
    assert got["traceparent"] == caller
    assert got["tracestate"] == "vendor=1"
