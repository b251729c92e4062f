"""The forget stream and the owners' side of it (see :mod:`chatbus.contracts.forget`).

The gateway creates the stream and one durable consumer per declared owner, so an owner that
has never run yet still gets every event once it starts. An owner calls :func:`serve_forget`
with a function that deletes its own state and says how much; the confirmation is published
only after that function returned, and a failure is retried with backoff (JetStream).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.js import api

from chatbus.bus import Bus
from chatbus.contracts.forget import (
    FORGET_OWNERS,
    FORGET_STREAM,
    ForgetConfirmed,
    ForgetRequested,
    durable_for,
)
from chatbus.jetstream import ConsumerSpec, consume, ensure_stream
from chatbus.streams import ensure_consumer

log = logging.getLogger("chatbus.forget")

Forgetter = Callable[[ForgetRequested], Awaitable[tuple[int, list[str]]]]
MAX_AGE_S = 30 * 86400  # requests and confirmations kept this long (the status of a request)


async def ensure_forget_stream(bus: Bus, owners: tuple[str, ...] = FORGET_OWNERS) -> None:
    """The ``FORGET`` stream and a durable consumer for each owner (the gateway calls it)."""
    await ensure_stream(bus, FORGET_STREAM, ["forget.>"], max_age=float(MAX_AGE_S))
    for owner in owners:
        await ensure_consumer(bus, FORGET_STREAM, _consumer_config(owner))


def _consumer_config(owner: str) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=durable_for(owner),
        ack_policy=api.AckPolicy.EXPLICIT,
        max_deliver=-1,
        ack_wait=60.0,
        max_ack_pending=32,  # as chatbus.jetstream makes it for the spec below
        filter_subject=f"{ForgetRequested.subject}.>",
    )


def serve_forget(bus: Bus, owner: str, forget: Forgetter) -> None:
    """Handle forget requests as ``owner`` until the bus drains: delete, then confirm."""
    assert owner in FORGET_OWNERS, f"{owner!r} is not a declared forget owner"

    async def handle(req: ForgetRequested) -> None:
        deleted, sessions = await forget(req)
        done = ForgetConfirmed(
            forget_id=req.forget_id,
            tenant_id=req.tenant_id,
            owner=owner,
            deleted=deleted,
            sessions=sessions,
        )
        await bus.js_publish(done, done.subject_of(), msg_id=f"forget:{req.forget_id}:{owner}")
        log.info("forgot", extra={"fields": {"forget_id": req.forget_id, "deleted": deleted}})

    spec = ConsumerSpec(
        stream=FORGET_STREAM,
        durable=durable_for(owner),
        subject=f"{ForgetRequested.subject}.>",
        max_deliver=None,  # forgetting is never given up: retried until it worked
        backoff=(1.0, 2.0, 4.0, 8.0, 16.0, 30.0),
        ack_wait=60.0,
        batch=8,
        concurrency=4,
    )

    async def run() -> None:
        await ensure_stream(bus, FORGET_STREAM, ["forget.>"], max_age=float(MAX_AGE_S))
        await consume(bus, spec, ForgetRequested, handle)

    bus.spawn(run())
