"""A message dead-lettered by a real JetStream consumer alerts once through Bus.on_dead_letter."""

from __future__ import annotations

import asyncio

from chatbus.alerts import Alerter
from chatbus.bus import Bus
from chatbus.contracts.base import Message
from chatbus.jetstream import ConsumerSpec, consume, ensure_dlq, ensure_stream
from tests.ops.webhook import Clock, Receiver


class Work(Message):
    n: int


async def test_dead_letters_alert_once_per_subject(
    bus: Bus, uid: str, receiver: Receiver, clock: Clock
) -> None:
    subject = f"ops.{uid}.work"
    await ensure_stream(bus, f"OPS_{uid}", [subject])
    await ensure_dlq(bus)
    alerter = Alerter(receiver.url, service="cost", clock=clock)
    parked: list[str] = []
    all_parked = asyncio.Event()

    def on_dead_letter(subj: str, reason: str) -> None:
        parked.append(reason)
        alerter.on_dead_letter(subj, reason)
        if len(parked) == 3:
            all_parked.set()

    bus.on_dead_letter = on_dead_letter

    async def always_fails(msg: Work) -> None:
        raise RuntimeError(f"cannot handle {msg.n}")

    spec = ConsumerSpec(
        stream=f"OPS_{uid}", durable=f"ops_{uid}", subject=subject, max_deliver=1, backoff=()
    )
    bus.spawn(consume(bus, spec, Work, always_fails))
    for n in range(3):
        await bus.js_publish(Work(n=n), subject)

    await asyncio.wait_for(all_parked.wait(), 15)
    await alerter.aclose()
    assert len(receiver.texts) == 1, receiver.texts
    assert subject in receiver.texts[0] and "cannot handle" in receiver.texts[0]
