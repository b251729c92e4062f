"""Logs and traces: JSON log lines with trace ids and context, secrets redacted, OTLP export.

``setup_logging`` and ``setup_tracing`` are called once by :func:`chatbus.runtime.serve`.
The OpenTelemetry SDK reads its own ``OTEL_*`` variables; we only add an OTLP exporter when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "chatbus_log_context", default=None
)


@contextmanager
def logging_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (request_id, agent, session, ...) to every log line in this block."""
    current = dict(log_context.get() or {})
    current.update({k: v for k, v in fields.items() if v is not None})
    token = log_context.set(current)
    try:
        yield
    finally:
        log_context.reset(token)


class Redactor:
    """Replaces known secret values, and anything that looks like a bearer token, in text."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets: list[str] = []
        for secret in secrets or []:
            self.add(secret)

    def add(self, secret: str) -> None:
        # Also as a JSON log line spells it: quotes, backslashes and non-ASCII escaped.
        for form in (secret, json.dumps(secret)[1:-1]):
            if len(form) >= 4 and form not in self.secrets:
                self.secrets.append(form)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "[REDACTED]")
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, redact: Redactor) -> None:
        super().__init__()
        self.service = service
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        entry.update(log_context.get() or {})
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return self.redact(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def setup_logging(
    service: str, level: str = "INFO", fmt: str = "json", secrets: list[str] | None = None
) -> Redactor:
    """Send every log line to stderr as JSON (or text), with secrets redacted."""
    redact = Redactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("nats", "aiohttp.access", "httpx", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redact


def setup_tracing(service: str) -> trace.TracerProvider | None:
    """Install the SDK's tracer provider when something reads the spans (an OTLP endpoint, or
    ``OTEL_TRACES_SAMPLER`` set); otherwise none.

    Without a provider, OpenTelemetry's API records nothing and costs next to nothing, yet a
    span started under a remote parent is that parent: the ``traceparent`` a message arrived
    with travels on to every hop and into every log line. Only the edge has no parent;
    :func:`edge_context` gives each request a fresh trace id there.
    """
    exporting = bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if not exporting and not os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


_ids = random.Random()


def edge_context(headers: dict[str, str]) -> Context:
    """The trace context a request arriving from outside runs in: the caller's W3C
    ``traceparent`` if it sent one; else, when no SDK records spans (and so none would start a
    trace), a new trace id, so the request still has one trace id end to end."""
    ctx = propagate.extract(headers)
    if trace.get_current_span(ctx).get_span_context().is_valid or isinstance(
        trace.get_tracer_provider(), TracerProvider
    ):
        return ctx
    root = trace.SpanContext(
        trace_id=_ids.getrandbits(128) or 1,
        span_id=_ids.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(root), ctx)


UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics"})
_http_tracer = trace.get_tracer("chatbus.http")


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A SERVER span per HTTP request, continuing the caller's W3C ``traceparent``."""
    if request.path in UNTRACED_PATHS:
        return await handler(request)
    route = request.match_info.route.resource
    name = f"{request.method} {route.canonical if route is not None else request.path}"
    ctx = edge_context(dict(request.headers))
    with _http_tracer.start_as_current_span(name, context=ctx, kind=trace.SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("url.path", request.path)
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        return response
