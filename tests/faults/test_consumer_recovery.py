"""A JetStream consumer keeps going through what a node death does to it: no stream (or no
leader) when it starts, one slow message among quick ones, a handler that hangs."""

from __future__ import annotations

import asyncio

from chatbus.bus import Bus
from chatbus.contracts.jobs import JobCallback
from chatbus.jetstream import ConsumerSpec, consume, ensure_stream


async def test_a_consumer_set_up_before_its_stream_exists_consumes_once_it_does(
    bus: Bus, uid: str
) -> None:
    stream, subject = f"LATE_{uid}", f"late.{uid}"
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handle(msg: JobCallback) -> None:
        if not got.done():
            got.set_result(msg.job_id)

    spec = ConsumerSpec(stream=stream, durable=f"late_{uid}", subject=subject)
    bus.spawn(consume(bus, spec, JobCallback, handle))  # the stream is not there yet
    await ensure_stream(bus, stream, [subject])
    await bus.js_publish(JobCallback(job_id="j1", url="https://example.com/"), subject)
    assert await asyncio.wait_for(got, 10) == "j1"


async def test_a_slow_message_does_not_hold_back_the_ones_after_it(bus: Bus, uid: str) -> None:
    stream, subject = f"SLOW_{uid}", f"slow.{uid}"
    await ensure_stream(bus, stream, [subject])
    release = asyncio.Event()
    started: dict[str, asyncio.Event] = {"slow": asyncio.Event(), "quick": asyncio.Event()}

    async def handle(msg: JobCallback) -> None:
        started[msg.job_id].set()
        if msg.job_id == "slow":
            await release.wait()  # e.g. waiting out a leader election

    spec = ConsumerSpec(stream=stream, durable=f"slow_{uid}", subject=subject, concurrency=4)
    bus.spawn(consume(bus, spec, JobCallback, handle))
    await bus.js_publish(JobCallback(job_id="slow", url="https://example.com/"), subject)
    await asyncio.wait_for(started["slow"].wait(), 10)
    await bus.js_publish(JobCallback(job_id="quick", url="https://example.com/"), subject)
    try:
        await asyncio.wait_for(started["quick"].wait(), 10)
    finally:
        release.set()


async def test_a_hung_handler_is_stopped_and_its_message_delivered_again(
    bus: Bus, uid: str
) -> None:
    stream, subject = f"HUNG_{uid}", f"hung.{uid}"
    await ensure_stream(bus, stream, [subject])
    deliveries: list[str] = []
    second: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(msg: JobCallback) -> None:
        deliveries.append(msg.job_id)
        if len(deliveries) == 1:
            await asyncio.Event().wait()  # hangs (and keeps beating in progress)
        elif not second.done():
            second.set_result(None)

    spec = ConsumerSpec(
        stream=stream,
        durable=f"hung_{uid}",
        subject=subject,
        keepalive=True,
        ack_wait=3.0,
        max_run_s=0.5,
        backoff=(0.1,),
    )
    bus.spawn(consume(bus, spec, JobCallback, handle))
    await bus.js_publish(JobCallback(job_id="j", url="https://example.com/"), subject)
    await asyncio.wait_for(second, 10)
    assert deliveries == ["j", "j"]
