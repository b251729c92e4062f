"""Trace context without spans: the tracer a service runs with when nothing exports traces.

With no exporter configured, recording spans would be wasted work on every message (the
SDK's sampler, ids, span objects: ~15 µs a span, several spans a message). This provider
keeps only what is still useful: each message keeps one trace id end to end, made at the
edge when the caller sent none, carried in ``traceparent`` to every service and shown in
every log line. Child "spans" are the parent's context itself; nothing is recorded.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

_random = random.Random()


class _UseSpan:
    """``with tracer.start_as_current_span(...) as span``: the span is current in the block."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.token: object = None

    def __enter__(self) -> Span:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self.token)  # type: ignore[arg-type]


class ContextOnlyTracer(trace.Tracer):
    """Continues the caller's trace, or starts one with fresh ids; records nothing."""

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            return NonRecordingSpan(parent)
        root = SpanContext(
            trace_id=_random.getrandbits(128) or 1,
            span_id=_random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.DEFAULT),
        )
        return NonRecordingSpan(root)

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _UseSpan:
        return _UseSpan(self.start_span(name, context))


class ContextOnlyTracerProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self._tracer = ContextOnlyTracer()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> trace.Tracer:
        return self._tracer
