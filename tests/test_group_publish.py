"""Group commit: concurrent events share JetStream writes; each caller waits for its own."""

from __future__ import annotations

import asyncio

from chatbus.group_publish import GroupPublisher


class Writes:
    """A stand-in stream: records each write; the first one is held until released."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail: Exception | None = None

    async def send(self, events: list[int], deadline: float | None) -> None:
        self.groups.append(events)
        self.started.set()
        if len(self.groups) == 1:
            await self.release.wait()
        if self.fail is not None:
            raise self.fail


async def test_events_sent_while_a_write_is_in_flight_leave_together() -> None:
    writes = Writes()
    pub = GroupPublisher(writes.send, max_events=4)
    first = asyncio.create_task(pub.publish(0))
    await asyncio.wait_for(writes.started.wait(), 1)  # the first event leaves alone, at once
    rest = [asyncio.create_task(pub.publish(i)) for i in range(1, 7)]
    await asyncio.sleep(0)  # allowed: one loop turn, so the new tasks queue their events
    assert not first.done() and not any(t.done() for t in rest)
    writes.release.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 2)
    assert writes.groups == [[0], [1, 2, 3, 4], [5, 6]]


async def test_a_failed_write_fails_every_caller_of_its_group() -> None:
    writes = Writes()
    writes.fail = ConnectionError("stream gone")
    pub = GroupPublisher(writes.send)
    calls = [asyncio.create_task(pub.publish(i)) for i in range(3)]
    writes.release.set()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_groups_stay_under_the_byte_limit() -> None:
    writes = Writes()
    writes.release.set()
    pub = GroupPublisher(writes.send, max_bytes=100)
    await asyncio.gather(*(pub.publish(i, size=40) for i in range(5)))
    assert [len(g) for g in writes.groups] == [2, 2, 1]


async def test_a_lone_event_is_not_held() -> None:
    writes = Writes()
    writes.release.set()
    await asyncio.wait_for(GroupPublisher(writes.send).publish(7), 1)
    assert writes.groups == [[7]]
