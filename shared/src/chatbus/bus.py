"""A typed bus over nats-py: publish, request/reply, queue-group subscribe, JetStream consume.

Messages are :class:`~chatbus.contracts.base.Message` models. W3C trace context travels in the
NATS headers (never in the payload). A handler is ``async def handler(msg: Model) -> Message |
None``; it never sees nats. A malformed message gets an :class:`ErrorReply` and a log line; a
handler that raises gets one too; the subscription keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError

from chatbus.contracts.base import ErrorReply, Message
from chatbus.deadline import DEADLINE_HEADER, header_value, remaining
from chatbus.progress import LOST_AFTER_S, ProgressInbox, run_in_time, watch_reply

if TYPE_CHECKING:
    from chatbus.metrics import Metrics
from chatbus.errors import BusUnavailable, NoResponders, RemoteError, RequestTimeout

log = logging.getLogger("chatbus.bus")
tracer = trace.get_tracer("chatbus.bus")

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)
Handler = Callable[[M], Awaitable[Message | None]]

ERROR_HEADER = "Chatbus-Error"
PING_INTERVAL_S = 2
# A JetStream publish that met a stream without a leader (a node died) or a lost connection.
JS_NOT_NOW = (
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.errors.TimeoutError,
    BusUnavailable,
)


# Another propagator configured (b3, say): always through OpenTelemetry's API.
_W3C_ONLY = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage") == "tracecontext,baggage"


def recording() -> bool:
    """Whether an SDK records spans here (``setup_tracing`` installed one). Without one, a
    span of ours would be the caller's context again: the bus then skips making them and
    passes the caller's ``traceparent`` on itself (a few µs per message, on every hop)."""
    return not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )


def trace_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers carrying the current trace context (W3C traceparent)."""
    carrier: dict[str, str] = dict(headers or {})
    if _W3C_ONLY and not recording() and not baggage.get_all():
        sc = trace.get_current_span().get_span_context()
        if sc.is_valid:
            carrier["traceparent"] = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"
            if sc.trace_state:
                carrier["tracestate"] = sc.trace_state.to_header()
        return carrier
    propagate.inject(carrier)
    return carrier


def _span(name: str, kind: SpanKind) -> AbstractContextManager[trace.Span]:
    """A span of ours, or (nothing records it) the current one, untouched."""
    if recording():
        return tracer.start_as_current_span(name, kind=kind)
    return contextlib.nullcontext(trace.INVALID_SPAN)


def describe_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


class Bus:
    """One service's connection to NATS, with typed helpers. Create with :meth:`connect`."""

    def __init__(self, nc: NATS, *, service: str = "chatbus") -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.service = service
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []
        self._consumers: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()
        # Set by serve(): the standard metrics (None in bare tests).
        self.metrics: Metrics | None = None
        # An extra hook called with (subject, reason) when a message is dead-lettered.
        self.on_dead_letter: Callable[[str, str], None] | None = None
        self._progress: ProgressInbox | None = None
        # Copies of each JetStream stream and KV bucket (NATS_REPLICAS); None: from the cluster.
        self.replicas: int | None = None

    @classmethod
    async def connect(cls, url: str, *, service: str, **options: Any) -> Bus:
        """Connect to NATS at ``url``; reconnects forever once connected."""

        async def on_error(e: Exception) -> None:
            log.warning("nats error: %s", e)

        async def on_disconnect() -> None:
            log.warning("nats disconnected")

        async def on_reconnect() -> None:
            log.info("nats reconnected")

        nc = await nats.connect(
            # NATS_URL may list several servers of a cluster, comma-separated.
            [u.strip() for u in url.split(",") if u.strip()] if "," in url else url,
            name=service,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            max_reconnect_attempts=-1,
            # The pool (every NATS_URL node and those the cluster announces) is shuffled, so
            # instances spread over the nodes; the next node is tried at once after a loss.
            reconnect_time_wait=0.5,
            # A node that dies without closing its connections (a lost host, not kill -9 on
            # this machine) is noticed after two unanswered pings: ~4-6 s, not the
            # client's default 4 minutes.
            ping_interval=options.pop("ping_interval", PING_INTERVAL_S),
            max_outstanding_pings=options.pop("max_outstanding_pings", 2),
            connect_timeout=options.pop("connect_timeout", 2),
            allow_reconnect=True,
            **options,
        )
        return cls(nc, service=service)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    # -- core NATS --------------------------------------------------------------------------

    async def publish(
        self,
        msg: Message,
        subject: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        reply: str = "",
    ) -> None:
        """Send ``msg``; answers to it, if any, go to ``reply`` (see :meth:`listen`)."""
        subject = subject or msg.subject
        with _span(f"publish {subject}", SpanKind.PRODUCER) as span:
            span.set_attribute("messaging.destination.name", subject)
            data, hdrs = msg.to_bytes(), trace_headers(headers)
            await self._guard(self.nc.publish(subject, data, reply=reply, headers=hdrs))

    async def wake(self, subject: str) -> None:
        """An empty message on ``subject``: whoever :meth:`listen` s there looks again."""
        await self._guard(self.nc.publish(subject, b""))

    @contextlib.asynccontextmanager
    async def listen(
        self, on_data: Callable[[bytes], None], subject: str | None = None, *, flush: bool = True
    ) -> AsyncIterator[str]:
        """Call ``on_data`` with the payload of each message on ``subject`` (a fresh inbox when
        None) while inside; yields the subject. Subscribed on entry: nothing sent after it is
        missed. For answers collected by the caller itself (several replies, progress).
        ``flush=False`` skips the round trip that makes the server know the subscription first:
        enough when every message can only come after something this connection sends next
        (the server reads one connection in order)."""
        subject = subject or self.nc.new_inbox()

        async def on_msg(raw: Msg) -> None:
            on_data(raw.data)

        sub = await self._guard(self.nc.subscribe(subject, cb=on_msg))
        try:
            if flush:  # the server knows it: nothing another connection sends later is missed
                await self._guard(self.nc.flush())
            yield subject
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def request(
        self,
        msg: Message,
        reply_type: type[R],
        subject: str | None = None,
        *,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> R:
        """Send ``msg`` and wait for one reply of ``reply_type``.

        With a ``deadline`` (Unix seconds) the wait ends then (or after ``timeout``) at the
        latest; the responder sees when (``Chatbus-Deadline``) and skips or stops the work then.
        Raises :class:`NoResponders` at once when nobody listens, :class:`RequestTimeout`,
        :class:`BusUnavailable`, or :class:`RemoteError` when the responder replied an error.
        """
        subject = subject or msg.subject
        if deadline is not None:
            timeout = min(timeout, remaining(deadline))
            if timeout <= 0:
                raise RequestTimeout(subject)
            # The responder learns when we stop waiting, and skips or stops work after that.
            # (Only with a deadline: work a caller did not bound, a forget say, runs to its end.)
            stop = header_value(time.time() + timeout)
            headers = {DEADLINE_HEADER: stop, **(headers or {})}
        with _span(f"request {subject}", SpanKind.CLIENT) as span:
            span.set_attribute("messaging.destination.name", subject)
            try:
                resp = await self.nc.request(
                    subject, msg.to_bytes(), timeout=timeout, headers=trace_headers(headers)
                )
            except nats.errors.NoRespondersError as e:
                span.set_status(Status(StatusCode.ERROR, "no responders"))
                raise NoResponders(subject) from e
            except nats.errors.TimeoutError as e:
                span.set_status(Status(StatusCode.ERROR, "timeout"))
                raise RequestTimeout(subject) from e
            except (
                nats.errors.ConnectionClosedError,
                nats.errors.ConnectionReconnectingError,
                nats.errors.OutboundBufferLimitError,
                nats.errors.StaleConnectionError,
            ) as e:
                raise BusUnavailable(str(e) or type(e).__name__) from e
            return decode_reply(resp, reply_type)

    async def request_watched(
        self,
        msg: Message,
        reply_type: type[R],
        subject: str | None = None,
        *,
        deadline: float,
        headers: dict[str, str] | None = None,
        lost_after_s: float = LOST_AFTER_S,
    ) -> R:
        """:meth:`request`, noticing in seconds when the instance working on it dies.

        The responder beats while it works (:mod:`chatbus.progress`); no reply and no beat for
        ``lost_after_s`` raises :class:`InstanceLost`, and the request may be sent again. When
        this returns or raises, a responder still working is told its caller is gone.
        """
        subject = subject or msg.subject
        if self._progress is None:
            self._progress = ProgressInbox(self.nc)

        def send(hdrs: dict[str, str]) -> Awaitable[R]:
            merged = {**(headers or {}), **hdrs}
            return self.request(
                msg, reply_type, subject, timeout=3600, headers=merged, deadline=deadline
            )

        return await watch_reply(
            self._progress, send, subject=subject, deadline=deadline, lost_after_s=lost_after_s
        )

    async def subscribe(
        self,
        subject: str,
        model: type[M],
        handler: Handler[M],
        *,
        queue: str = "",
        max_in_flight: int = 512,
    ) -> Subscription:
        """Call ``handler`` for each message on ``subject`` (in queue group ``queue``).

        Messages are handled concurrently, up to ``max_in_flight`` at once. The handler's return
        value is the reply (when the sender asked for one).
        """
        limit = asyncio.Semaphore(max_in_flight)

        async def on_msg(raw: Msg) -> None:
            arrived = time.monotonic()
            await limit.acquire()
            waited = time.monotonic() - arrived
            task = asyncio.create_task(self._handle(raw, model, handler, limit, waited))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        sub = await self.nc.subscribe(subject, queue=queue, cb=on_msg, pending_msgs_limit=65536)
        self._subs.append(sub)
        await self.nc.flush()
        return sub

    async def _handle(
        self,
        raw: Msg,
        model: type[M],
        handler: Handler[M],
        limit: asyncio.Semaphore,
        waited: float = 0.0,
    ) -> None:
        ctx = propagate.extract(raw.headers or {})
        try:
            if not recording():  # the caller's context is current while the handler runs
                token = otel_context.attach(ctx)
                try:
                    await self._answer(raw, model, handler, waited, trace.INVALID_SPAN)
                finally:
                    otel_context.detach(token)
                return
            with tracer.start_as_current_span(
                f"handle {raw.subject}", context=ctx, kind=SpanKind.SERVER
            ) as span:
                span.set_attribute("messaging.destination.name", raw.subject)
                span.set_attribute("chatbus.service", self.service)
                await self._answer(raw, model, handler, waited, span)
        except Exception:  # the subscription must survive anything
            log.exception("failed to reply on %s", raw.subject)
        finally:
            limit.release()

    async def _answer(
        self, raw: Msg, model: type[M], handler: Handler[M], waited: float, span: trace.Span
    ) -> None:
        reply = await self._run_in_time(raw, model, handler, waited)
        if isinstance(reply, ErrorReply):
            span.set_status(Status(StatusCode.ERROR, reply.code))
        if raw.reply and reply is not None:
            headers: dict[str, str] | None = (
                {ERROR_HEADER: reply.code} if isinstance(reply, ErrorReply) else None
            )
            await self.nc.publish(raw.reply, reply.to_bytes(), headers=headers)

    async def _run_in_time(
        self, raw: Msg, model: type[M], handler: Handler[M], waited: float
    ) -> Message | None:
        """Run the handler within the request's deadline, beating when the caller asked."""
        work = self._run_handler(raw.subject, raw.data, model, handler)
        return await run_in_time(self.nc, raw.subject, raw.headers or {}, work, waited)

    async def _run_handler(
        self, subject: str, data: bytes, model: type[M], handler: Handler[M]
    ) -> Message | None:
        try:
            msg = model.model_validate_json(data)
        except ValidationError as e:
            text = describe_validation_error(e)
            log.warning("malformed message on %s: %s", subject, text)
            return ErrorReply(code="invalid", message=f"malformed {model.__name__}: {text}")
        try:
            return await handler(msg)
        except RemoteError as e:
            return e.to_reply()
        except ConnectionError as e:  # a store it needs is down (Redis failing over, say)
            log.warning("handler for %s: %s: %s", subject, type(e).__name__, e)
            return ErrorReply(
                code="unavailable", message="a store it needs is unavailable, try again"
            )
        except Exception as e:
            log.exception("handler for %s failed", subject)
            return ErrorReply(code="internal", message=f"{type(e).__name__} while handling")

    # -- JetStream --------------------------------------------------------------------------

    async def js_publish(
        self,
        msg: Message,
        subject: str | None = None,
        *,
        msg_id: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
        deadline: float | None = None,
    ) -> None:
        """Publish durably to a JetStream stream; ``msg_id`` de-duplicates retries.

        With a ``msg_id`` and a ``deadline`` (Unix seconds), a stream that cannot take the
        message right now (it is electing a leader after a node died: no responders, or no
        answer) is asked again until the deadline, each try within ``timeout``.
        """
        subject = subject or msg.subject
        h = dict(headers or {})
        if msg_id:
            h["Nats-Msg-Id"] = msg_id
        retry = msg_id is not None and deadline is not None
        with _span(f"publish {subject}", SpanKind.PRODUCER) as span:
            span.set_attribute("messaging.destination.name", subject)
            data, hdrs = msg.to_bytes(), trace_headers(h)
            pause = 0.1
            while True:
                wait = max(0.1, min(timeout, remaining(deadline))) if retry else timeout
                try:
                    await self._guard(self.js.publish(subject, data, headers=hdrs, timeout=wait))
                    return
                except JS_NOT_NOW:
                    if not retry or remaining(deadline) <= pause:
                        raise
                await asyncio.sleep(pause)  # allowed: pacing while the stream elects a leader
                pause = min(pause * 2, 1.0)

    async def js_last(self, stream: str, subject: str) -> bytes | None:
        """The payload of the last message on ``subject`` in ``stream``; None when it has none."""
        try:
            raw = await self._guard(self.js.get_last_msg(stream, subject))
        except nats.js.errors.NotFoundError:
            return None
        return bytes(raw.data or b"")

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run a background task owned by the bus; it is cancelled at :meth:`close`."""

        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._consumers.append(task)

    @property
    def closing(self) -> asyncio.Event:
        return self._closing

    # -- lifecycle --------------------------------------------------------------------------

    async def drain(self, timeout: float = 20.0) -> None:
        """Stop taking new messages, let in-flight handlers finish, then close."""
        self._closing.set()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
        if self._consumers:
            await asyncio.wait(self._consumers, timeout=timeout)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in self._consumers:
            task.cancel()
        try:
            await asyncio.wait_for(self.nc.drain(), timeout=timeout)
        except Exception:
            log.debug("drain failed", exc_info=True)
        if not self.nc.is_closed:
            await self.nc.close()

    async def _guard(self, aw: Awaitable[Any]) -> Any:
        try:
            return await aw
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError,
        ) as e:
            raise BusUnavailable(str(e) or type(e).__name__) from e


def decode_reply(resp: Msg, reply_type: type[R]) -> R:
    """Turn a reply into ``reply_type``, raising :class:`RemoteError` for an error reply."""
    if resp.headers and ERROR_HEADER in resp.headers:
        raise RemoteError.from_reply(ErrorReply.model_validate_json(resp.data))
    try:
        return reply_type.model_validate_json(resp.data)
    except ValidationError:
        try:
            err = ErrorReply.model_validate_json(resp.data)
        except ValidationError:
            raise RemoteError("internal", f"unreadable reply for {reply_type.__name__}") from None
        raise RemoteError.from_reply(err) from None
