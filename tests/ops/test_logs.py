"""Log lines are JSON with trace and request context, and never carry a configured secret."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from chatbus.telemetry import logging_context, setup_logging

SECRET = "sk-test-9f8e7d6c5b4a39281706"
ADMIN_KEY = "admin-0123456789abcdef"


def lines(err: str) -> list[dict[str, Any]]:
    out = []
    for line in err.splitlines():
        entry = json.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict)
        out.append(entry)
    return out


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_with_trace_ids_context_and_secrets_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("agent-support", "INFO", "json", secrets=[SECRET, ADMIN_KEY])
    log = logging.getLogger("chatbus.test")
    tracer = TracerProvider().get_tracer("ops-test")

    log.info("started outside any request")
    with tracer.start_as_current_span("chat") as span:
        with logging_context(request_id="req-42", agent="support", session="s-1"):
            log.warning("calling the LLM with key %s", SECRET)
            log.info("headers", extra={"fields": {"authorization": f"Bearer {ADMIN_KEY}"}})
            try:
                raise RuntimeError(f"provider said: invalid api key {SECRET}")
            except RuntimeError:
                log.exception("LLM call failed")
        ctx = span.get_span_context()

    err = capsys.readouterr().err
    assert SECRET not in err and ADMIN_KEY not in err
    first, *inside = lines(err)
    assert len(inside) == 3

    assert first["service"] == "agent-support" and first["level"] == "info"
    assert "trace_id" not in first and "request_id" not in first
    for key in ("timestamp", "level", "service", "message"):
        assert key in first

    for entry in inside:
        assert entry["trace_id"] == format(ctx.trace_id, "032x")
        assert entry["span_id"] == format(ctx.span_id, "016x")
        assert entry["request_id"] == "req-42"
        assert entry["agent"] == "support" and entry["session"] == "s-1"
    warning, headers, failure = inside
    assert warning["level"] == "warning" and "[REDACTED]" in warning["message"]
    assert headers["authorization"] == "Bearer [REDACTED]"
    assert failure["level"] == "error" and "[REDACTED]" in failure["error"]


@pytest.mark.usefixtures("restore_logging")
def test_context_does_not_leak_past_its_block(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("gateway", "INFO", "json")
    log = logging.getLogger("chatbus.test")
    with logging_context(request_id="req-1", session=None):
        log.info("inside")
    log.info("after")
    inside, after = lines(capsys.readouterr().err)
    assert inside["request_id"] == "req-1" and "session" not in inside
    assert "request_id" not in after


def test_message_contents_are_not_logged_unless_switched_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chatbus.settings import ServiceSettings

    assert ServiceSettings(_env_file=None, app_env="production").log_content is False
    monkeypatch.setenv("LOG_CONTENT", "true")
    assert ServiceSettings(_env_file=None).log_content is True
