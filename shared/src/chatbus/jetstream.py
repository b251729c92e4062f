"""JetStream work: durable consumers with retries and backoff, and a dead-letter stream.

Streams and KV buckets are created by :mod:`chatbus.streams` (file-backed, replicated; its
functions are re-exported here). A message is acked after its
handler succeeded, retried with backoff when the handler raised, and parked on the dead-letter
stream (``dlq.<subject>``) once it was delivered ``max_deliver`` times or was malformed. Parked
messages keep their original subject and can be re-driven (:mod:`chatbus.dead_letters`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from chatbus.bus import Bus, describe_validation_error
from chatbus.contracts.base import Message
from chatbus.errors import RemoteError
from chatbus.streams import DLQ_PREFIX, DLQ_STREAM, ensure_dlq, ensure_kv, ensure_stream, replicas

__all__ = [
    "DLQ_PREFIX",
    "DLQ_STREAM",
    "ConsumerSpec",
    "Defer",
    "Park",
    "consume",
    "consume_batches",
    "dead_letter",
    "ensure_dlq",
    "ensure_kv",
    "ensure_stream",
    "replicas",
]

log = logging.getLogger("chatbus.jetstream")
tracer = trace.get_tracer("chatbus.jetstream")

M = TypeVar("M", bound=Message)

H_REASON = "Chatbus-Dlq-Reason"
H_SUBJECT = "Chatbus-Dlq-Subject"
H_STREAM = "Chatbus-Dlq-Stream"
H_CONSUMER = "Chatbus-Dlq-Consumer"
H_DELIVERIES = "Chatbus-Dlq-Deliveries"
# Each try to set a consumer up waits this long for JetStream.
SETUP_TRY_S = 1.5


class Defer(Exception):
    """Raised by a handler: deliver the message again later, not counted as a failure (the
    consumer's backoff for this delivery, or ``delay`` seconds)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Park(Exception):
    """Raised by a handler: put the message on the dead-letter stream now, for this reason."""


@dataclass
class ConsumerSpec:
    """Where to consume from and how hard to retry."""

    stream: str
    durable: str
    subject: str
    # Deliveries before a failing message is parked; None: the handler decides (Park).
    max_deliver: int | None = 5
    backoff: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0)
    ack_wait: float = 30.0
    # While a handler works, tell the server every ack_wait/3 that it is still in progress:
    # ack_wait can then be short, so a message whose consumer leader or worker died (a NATS
    # node killed) is delivered again within ack_wait, whatever the handler's longest run.
    keepalive: bool = False
    # A handler still running after this long is cancelled and its message delivered again
    # (with keepalive, a hung handler would otherwise hold its message forever).
    max_run_s: float | None = None
    batch: int = 32
    concurrency: int = 16
    # Extra delay before the first retry; jitter-free so tests can reason about it.
    extra: dict[str, Any] = field(default_factory=dict)

    def delay_for(self, delivered: int) -> float:
        if not self.backoff:
            return 0.0
        return float(self.backoff[min(delivered - 1, len(self.backoff) - 1)])


async def dead_letter(bus: Bus, raw: Msg, spec: ConsumerSpec, reason: str) -> None:
    """Park ``raw`` on the dead-letter stream, then terminate it on its own stream."""
    meta = raw.metadata
    headers = {
        H_REASON: reason[:500],
        H_SUBJECT: raw.subject,
        H_STREAM: spec.stream,
        H_CONSUMER: spec.durable,
        H_DELIVERIES: str(meta.num_delivered),
    }
    for k, v in (raw.headers or {}).items():
        headers.setdefault(k, v)
    headers["Nats-Msg-Id"] = f"dlq:{spec.stream}:{meta.sequence.stream}"
    await bus.js.publish(f"{DLQ_PREFIX}{raw.subject}", raw.data, headers=headers)
    await raw.term()
    log.error(
        "dead-lettered message from %s (%s) after %d deliveries: %s",
        raw.subject,
        spec.durable,
        meta.num_delivered,
        reason,
    )
    if bus.metrics is not None:
        bus.metrics.dead_letters.labels(raw.subject).inc()
    if bus.on_dead_letter is not None:
        bus.on_dead_letter(raw.subject, reason)


async def consume(
    bus: Bus,
    spec: ConsumerSpec,
    model: type[M],
    handler: Callable[[M], Awaitable[None]],
) -> None:
    """Run ``handler`` for each message of a durable pull consumer until the bus closes.

    Up to ``spec.concurrency`` messages are handled at once, and a free slot is filled at once:
    a slow message (one waiting out a leader election, say) never holds back the ones behind it.
    """
    running: set[asyncio.Task[None]] = set()
    slot_free = asyncio.Event()

    def room() -> int:
        return spec.concurrency - len(running)

    async def wait_for_room() -> int:
        while room() <= 0:
            slot_free.clear()
            await slot_free.wait()
        return room()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slot_free.set()

    async def on_batch(items: list[tuple[Msg, M]]) -> None:
        for raw, msg in items:
            task = asyncio.create_task(_one(raw, msg))
            running.add(task)
            task.add_done_callback(finished)

    async def _one(raw: Msg, msg: M) -> None:
        ctx = propagate.extract(raw.headers or {})
        with tracer.start_as_current_span(
            f"consume {raw.subject}", context=ctx, kind=SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.destination.name", raw.subject)
            span.set_attribute("messaging.consumer.group.name", spec.durable)
            work: Awaitable[None] = handler(msg)
            if spec.max_run_s is not None:
                work = _bounded(work, spec.max_run_s, spec.durable)
            if spec.keepalive:
                work = _kept_alive(raw, work, spec.ack_wait / 3)
            await _settle(bus, spec, raw, work)

    try:
        await _loop(bus, spec, model, on_batch, wait_for_room)
    finally:
        if running:  # let the messages in hand finish (drain), so they are acked
            await asyncio.wait(set(running))


async def _bounded(work: Awaitable[None], max_run_s: float, durable: str) -> None:
    try:
        await asyncio.wait_for(work, max_run_s)
    except TimeoutError:
        raise TimeoutError(f"handler of {durable} ran over {max_run_s:g} s: stopped") from None


async def _kept_alive(raw: Msg, work: Awaitable[None], every: float) -> None:
    """``work``, telling the server every ``every`` seconds that ``raw`` is still worked on."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)  # allowed: the in-progress beat's period
            try:
                await raw.in_progress()
            except Exception:
                log.debug("in-progress beat for %s failed", raw.subject, exc_info=True)

    beating = asyncio.create_task(beat())
    try:
        await work
    finally:
        beating.cancel()


async def consume_batches(
    bus: Bus,
    spec: ConsumerSpec,
    model: type[M],
    handler: Callable[[list[M]], Awaitable[None]],
) -> None:
    """Like :func:`consume` but hands the handler whole batches (for batched embedding)."""

    async def on_batch(items: list[tuple[Msg, M]]) -> None:
        # One span per batch: a child of the first message's trace, linked to every message's.
        contexts = [propagate.extract(raw.headers or {}) for raw, _ in items]
        links = [
            trace.Link(sc)
            for sc in (trace.get_current_span(c).get_span_context() for c in contexts)
            if sc.is_valid
        ]
        try:
            with tracer.start_as_current_span(
                f"consume {spec.subject}",
                context=contexts[0],
                kind=SpanKind.CONSUMER,
                links=links,
            ) as span:
                span.set_attribute("messaging.batch.message_count", len(items))
                span.set_attribute("messaging.consumer.group.name", spec.durable)
                await handler([m for _, m in items])
        except Exception as e:
            log.exception("batch handler for %s failed", spec.durable)
            for raw, _ in items:
                await _retry_or_park(bus, spec, raw, f"{type(e).__name__}: {e}")
            return
        for raw, _ in items:
            await raw.ack()

    await _loop(bus, spec, model, on_batch)


async def _settle(bus: Bus, spec: ConsumerSpec, raw: Msg, work: Awaitable[None]) -> None:
    try:
        await _outcome(bus, spec, raw, work)
    except Exception:
        # The ack, nak or dead-lettering itself failed (the connection or the consumer's leader
        # is gone): the message is delivered again after ack_wait.
        log.warning("could not settle a message of %s", spec.durable, exc_info=True)


async def _outcome(bus: Bus, spec: ConsumerSpec, raw: Msg, work: Awaitable[None]) -> None:
    try:
        await work
    except Defer as e:
        delivered = raw.metadata.num_delivered
        await raw.nak(delay=e.delay if e.delay is not None else spec.delay_for(delivered))
        return
    except Park as e:
        await dead_letter(bus, raw, spec, str(e))
        return
    except RemoteError as e:
        if e.code == "invalid":
            await dead_letter(bus, raw, spec, f"invalid: {e.message}")
        else:
            await _retry_or_park(bus, spec, raw, f"{e.code}: {e.message}")
        return
    except Exception as e:
        log.exception(
            "handler for %s failed (delivery %d)", raw.subject, raw.metadata.num_delivered
        )
        await _retry_or_park(bus, spec, raw, f"{type(e).__name__}: {e}")
        return
    await raw.ack()


async def _park(reason: str) -> None:
    raise Park(reason)


async def _retry_or_park(bus: Bus, spec: ConsumerSpec, raw: Msg, reason: str) -> None:
    delivered = raw.metadata.num_delivered
    if spec.max_deliver is not None and delivered >= spec.max_deliver:
        await dead_letter(bus, raw, spec, reason)
    else:
        await raw.nak(delay=spec.delay_for(delivered))


async def _loop(
    bus: Bus,
    spec: ConsumerSpec,
    model: type[M],
    on_batch: Callable[[list[tuple[Msg, M]]], Awaitable[None]],
    room: Callable[[], Awaitable[int]] | None = None,
) -> None:
    config = api.ConsumerConfig(
        durable_name=spec.durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        # One more than ours, so the server never gives up before we dead-letter it.
        max_deliver=-1 if spec.max_deliver is None else spec.max_deliver + 1,
        ack_wait=spec.ack_wait,
        max_ack_pending=max(spec.batch * 4, spec.concurrency * 2),
        filter_subject=spec.subject,
        **spec.extra,
    )
    pause = 0.25
    while not bus.closing.is_set():
        # A consumer that cannot be set up or read now (its stream or the meta group is
        # electing a leader after a node died) is set up again: it must never stop for good.
        try:
            psub = await _pull_subscribe(bus, spec, config)
        except Exception as e:
            log.warning("consumer %s not available yet (%s): retrying", spec.durable, e)
            await asyncio.sleep(pause)  # allowed: pacing while JetStream elects a leader
            pause = min(pause * 2, 2.0)
            continue
        pause = 0.25
        try:
            await _fetch_until_closing(bus, spec, model, on_batch, psub, room)
        except Exception:
            log.exception("consumer %s failed: setting it up again", spec.durable)
            await asyncio.sleep(pause)  # allowed: pacing before setting the consumer up again
        finally:
            try:
                await psub.unsubscribe()
            except Exception:
                log.debug("unsubscribe of %s failed", spec.durable, exc_info=True)


async def _fetch_until_closing(
    bus: Bus,
    spec: ConsumerSpec,
    model: type[M],
    on_batch: Callable[[list[tuple[Msg, M]]], Awaitable[None]],
    psub: Any,
    room: Callable[[], Awaitable[int]] | None = None,
) -> None:
    while not bus.closing.is_set():
        # Only as many messages as there are free slots: one fetched but waiting for a slot
        # would get no in-progress beats and be delivered twice.
        batch = spec.batch if room is None else min(spec.batch, await room())
        try:
            # Bounded here too: after a cluster node dies, a fetch can hang past its own
            # timeout (seen with nats-py 2.x), which would stall this consumer for good.
            raws = await asyncio.wait_for(psub.fetch(batch, timeout=1.0), 5.0)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            if bus.closing.is_set():
                return
            await asyncio.sleep(0.5)  # allowed: waiting for the connection to come back
            continue
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
            # The consumer has no leader right now (a node died): ask again soon.
            log.info("consumer %s has no leader yet", spec.durable)
            await asyncio.sleep(0.25)  # allowed: pacing while the consumer elects a leader
            continue
        except Exception:
            log.exception("fetch from %s failed", spec.durable)
            await asyncio.sleep(1.0)  # allowed: backoff before the next fetch
            continue
        if bus.metrics is not None and raws:
            bus.metrics.queue_pending.labels(spec.durable).set(raws[-1].metadata.num_pending)
            redelivered = sum(1 for r in raws if r.metadata.num_delivered > 1)
            if redelivered:
                bus.metrics.redeliveries.labels(spec.durable).inc(redelivered)
        items: list[tuple[Msg, M]] = []
        for raw in raws:
            try:
                items.append((raw, model.model_validate_json(raw.data)))
            except ValidationError as e:
                reason = f"malformed: {describe_validation_error(e)}"
                await _settle(bus, spec, raw, _park(reason))
        if items:
            await on_batch(items)


async def _pull_subscribe(bus: Bus, spec: ConsumerSpec, config: api.ConsumerConfig) -> Any:
    # Short tries: while the consumer elects a leader nobody answers, and the loop above asks
    # again; one long wait would add up to its whole length to the recovery.
    js = bus.nc.jetstream(timeout=SETUP_TRY_S)
    try:
        info = await js.consumer_info(spec.stream, spec.durable)
        if info.config.max_deliver != config.max_deliver or info.config.ack_wait != config.ack_wait:
            await js.add_consumer(spec.stream, config=config)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(spec.stream, config=config)
    return await bus.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
