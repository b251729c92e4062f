"""Without an exporter, a message still keeps one trace id from the edge through every hop."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import propagate, trace

from chatbus.telemetry import edge_context, setup_logging

# What every service runs with when no exporter is configured: OpenTelemetry's API alone.
tracer = trace.NoOpTracerProvider().get_tracer("test")


def test_the_edge_starts_a_trace_and_every_hop_continues_it() -> None:
    with tracer.start_as_current_span(
        "POST /api/chat/support", context=edge_context({}), kind=trace.SpanKind.SERVER
    ):
        edge = trace.get_current_span().get_span_context()
        assert edge.is_valid
        with tracer.start_as_current_span("request chat.request.v1.support"):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
    assert carrier["traceparent"].split("-")[1] == format(edge.trace_id, "032x")
    assert not trace.get_current_span().get_span_context().is_valid  # nothing leaks out

    # The agent: the caller's context from the message headers.
    incoming = propagate.extract(carrier)
    with tracer.start_as_current_span("handle", context=incoming, kind=trace.SpanKind.SERVER):
        assert trace.get_current_span().get_span_context().trace_id == edge.trace_id
        onward: dict[str, str] = {}
        propagate.inject(onward)
    assert onward["traceparent"].split("-")[1] == format(edge.trace_id, "032x")

    # Two messages at the edge: two traces.
    with tracer.start_as_current_span("POST /api/chat/support", context=edge_context({})):
        other = trace.get_current_span().get_span_context()
    assert other.is_valid and other.trace_id != edge.trace_id


@pytest.mark.usefixtures("restore_logging")
def test_log_lines_carry_the_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("gateway", "INFO", "json")
    with tracer.start_as_current_span("POST /api/chat/support", context=edge_context({})):
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        logging.getLogger("chatbus.test").info("answering")
    entry = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert entry["trace_id"] == trace_id


def test_the_edge_continues_a_callers_trace() -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracer.start_as_current_span(
        "POST /v1/chat/completions", context=edge_context({"traceparent": caller})
    ):
        assert format(trace.get_current_span().get_span_context().trace_id, "032x") == (
            "0af7651916cd43dd8448eb211c80319c"
        )
