"""Alerts reach a real webhook over HTTP once per cooldown, never raise and never leak secrets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from chatbus.alerts import Alerter, ErrorRateWatch
from chatbus.telemetry import Redactor
from tests.ops.webhook import WEBHOOK_TOKEN, Clock, Receiver


@pytest_asyncio.fixture
async def alerter(receiver: Receiver, clock: Clock) -> AsyncIterator[Alerter]:
    a = Alerter(receiver.url, service="agent-support", cooldown_s=300, clock=clock)
    yield a
    await a.aclose()


async def test_one_alert_per_condition_per_cooldown(
    alerter: Alerter, receiver: Receiver, clock: Clock
) -> None:
    assert await alerter.fire("llm", "LLM down") is True
    assert len(receiver.texts) == 1 and "LLM down" in receiver.texts[0]
    assert "agent-support" in receiver.texts[0]

    clock.now += 299
    assert await alerter.fire("llm", "LLM down") is False
    assert await alerter.fire("llm", "LLM down") is False
    # Another condition is not held back by the first one's cooldown.
    assert await alerter.fire("dlq", "dead letter") is True
    assert receiver.texts[1:] == [receiver.texts[-1]] and "dead letter" in receiver.texts[-1]

    clock.now += 1
    assert await alerter.fire("llm", "LLM still down") is True
    assert "LLM still down" in receiver.texts[-1]
    assert "2 more since the last alert" in receiver.texts[-1]
    assert len(receiver.texts) == 3


async def test_a_storm_of_dead_letters_sends_one_alert(
    alerter: Alerter, receiver: Receiver, clock: Clock
) -> None:
    for i in range(200):
        alerter.on_dead_letter("chat.request.v1.support", f"handler failed {i}")
    await alerter.drain()
    assert len(receiver.texts) == 1
    assert "chat.request.v1.support" in receiver.texts[0]
    assert "dead-lettered" in receiver.texts[0]

    clock.now += 301
    alerter.on_dead_letter("chat.request.v1.support", "again")
    await alerter.drain()
    assert len(receiver.texts) == 2 and "199 more" in receiver.texts[1]


async def test_llm_failure_and_budget_helpers(alerter: Alerter, receiver: Receiver) -> None:
    alerter.llm_failure_soon("sales", "gpt-4o-mini", "timeout")
    await alerter.drain()
    assert await alerter.llm_failure("sales", "gpt-4o-mini", "timeout") is False
    assert await alerter.budget_crossed("global", "monthly", "soft", 401.0, 500.0) is True
    # Hard is its own condition: crossing it alerts even right after the soft alert.
    assert await alerter.budget_crossed("global", "monthly", "hard", 500.5, 500.0) is True
    assert await alerter.budget_crossed("global", "monthly", "hard", 501.0, 500.0) is False
    alerter.budget_crossed_soon("user:u1", "daily", "hard", 1.2, 1.0)
    await alerter.drain()
    assert "user:u1 (daily)" in receiver.texts.pop()
    llm, soft, hard = receiver.texts
    assert "sales" in llm and "gpt-4o-mini" in llm and "timeout" in llm
    assert "soft budget crossed for global (monthly): $401.00 of $500.00" in soft
    assert "hard budget" in hard and "refused" in hard


async def test_error_rate_fires_over_threshold_with_enough_traffic(
    alerter: Alerter, receiver: Receiver, clock: Clock
) -> None:
    watch = ErrorRateWatch(
        alerter, what="chat messages", window_s=60, threshold=0.05, min_count=20, clock=clock
    )
    for _ in range(19):
        assert watch.observe(ok=False) is False  # 100% errors, but too few to judge
    await alerter.drain()
    assert receiver.texts == []
    clock.now += 61  # those fall out of the window
    for _ in range(95):
        watch.observe(ok=True)
    for _ in range(5):
        assert watch.observe(ok=False) is False  # 5 of 100 is not over a 5% threshold
    await alerter.drain()
    assert receiver.texts == []
    assert watch.observe(ok=False) is True
    for _ in range(50):
        watch.observe(ok=False)  # the condition goes on: still one alert
    await alerter.drain()
    assert len(receiver.texts) == 1
    assert "error rate" in receiver.texts[0] and "chat messages" in receiver.texts[0]

    clock.now += 61  # the window slides past every failure
    assert watch.observe(ok=True) is False
    assert watch.ratio == 0.0


async def test_failing_webhook_is_logged_without_its_url_and_retried_later(
    receiver: Receiver, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    alerter = Alerter(receiver.url, service="cost", cooldown_s=300, clock=clock, retry_s=30)
    try:
        with caplog.at_level(logging.WARNING, logger="chatbus.alerts"):
            assert await alerter.fire("dlq", "parked") is False
        assert "HTTP 500" in caplog.text
        assert WEBHOOK_TOKEN not in caplog.text
        clock.now += 10
        assert await alerter.fire("dlq", "parked") is False
        assert len(receiver.texts) == 1  # held back: no retry before retry_s
        receiver.status = 200
        clock.now += 21
        assert await alerter.fire("dlq", "parked") is True
        assert len(receiver.texts) == 2
    finally:
        await alerter.aclose()


async def test_unreachable_webhook_never_raises(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:9/hooks/{WEBHOOK_TOKEN}"  # discard port: nothing listens
    alerter = Alerter(url, service="gateway", clock=clock, timeout_s=2)
    try:
        with caplog.at_level(logging.WARNING, logger="chatbus.alerts"):
            assert await alerter.fire("x", "boom") is False
        assert "webhook" in caplog.text and WEBHOOK_TOKEN not in caplog.text
    finally:
        await alerter.aclose()


async def test_without_a_webhook_alerts_are_only_logged(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    alerter = Alerter(None, service="memory", clock=clock)
    with caplog.at_level(logging.WARNING, logger="chatbus.alerts"):
        assert await alerter.fire("dlq", "parked on memory.v1") is False
    assert "parked on memory.v1" in caplog.text
    await alerter.aclose()


async def test_alert_text_never_carries_a_secret(receiver: Receiver, clock: Clock) -> None:
    secret = "sk-live-0123456789abcdef"
    alerter = Alerter(receiver.url, service="agent-sales", clock=clock, redact=Redactor([secret]))
    try:
        await alerter.llm_failure("sales", "gpt-4o", f"401 invalid key {secret}")
    finally:
        await alerter.aclose()
    assert secret not in receiver.texts[0] and "[REDACTED]" in receiver.texts[0]


def test_built_from_service_settings() -> None:
    from chatbus.settings import ServiceSettings

    settings = ServiceSettings(
        _env_file=None,
        service_name="cost",
        app_env="staging",
        alert_webhook_url="https://hooks.example/T/B/X",
        alert_cooldown_s=60,
    )
    alerter = Alerter.from_settings(settings)
    assert alerter.webhook_url == "https://hooks.example/T/B/X"
    assert alerter.cooldown_s == 60 and alerter.environment == "staging"
    empty = ServiceSettings(_env_file=None, alert_webhook_url="")
    assert Alerter.from_settings(empty).webhook_url is None
