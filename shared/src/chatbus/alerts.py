"""Alerts to a Slack-compatible webhook, one per condition per cooldown.

An :class:`Alerter` POSTs ``{"text": "..."}`` to ``ALERT_WEBHOOK_URL``. Each alert has a key
naming its condition (``dead_letter:chat.request.v1.support``, ``budget:hard:global:day``);
the same key is sent at most once per cooldown, so a condition that persists sends one alert,
not a storm. Alerts suppressed during the cooldown are counted and reported with the next one.
Sending never raises: a failing webhook is logged (without its URL, which is a secret) and
the key may be retried after ``retry_s``.

How to hook each alert (the same conditions are Prometheus rules in ``infra/prometheus``)::

    alerter = Alerter.from_settings(settings, redact=rt.redactor)   # once, in serve()
    rt.stack.push_async_callback(alerter.aclose)

    # dead letters: Bus calls on_dead_letter(subject, reason) synchronously; keep the metric
    def on_dead_letter(subject: str, reason: str) -> None:
        metrics.dead_letters.labels(subject).inc()
        alerter.on_dead_letter(subject, reason)
    bus.on_dead_letter = on_dead_letter

    # error rate: one watch per service, fed with every handled message / request
    errors = ErrorRateWatch(alerter, what="chat messages")
    errors.observe(ok=outcome == "ok" or outcome.startswith("degraded_"))

    # LLM failures: after the LLM client gave up (retries exhausted)
    alerter.llm_failure_soon(agent, model, kind)        # or: await alerter.llm_failure(...)

    # budgets: when spend crosses the soft or hard limit (call on the crossing)
    alerter.budget_crossed_soon(scope, period, "soft", spent_usd, limit_usd)

The ``*_soon`` methods schedule the POST on the running loop and return at once (use them on
the message path); :meth:`Alerter.drain` waits for scheduled alerts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import aiohttp

from chatbus.settings import ServiceSettings

log = logging.getLogger("chatbus.alerts")

Clock = Callable[[], float]
Level = Literal["soft", "hard"]


class _WebhookStatus(Exception):
    """The webhook answered with a non-2xx status."""


class Alerter:
    """Sends alerts to one webhook, each key at most once per ``cooldown_s`` seconds."""

    def __init__(
        self,
        webhook_url: str | None,
        *,
        service: str,
        cooldown_s: float = 300,
        http: aiohttp.ClientSession | None = None,
        clock: Clock = time.monotonic,
        redact: Callable[[str], str] | None = None,
        environment: str | None = None,
        retry_s: float = 30.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.webhook_url = webhook_url or None
        self.service = service
        self.cooldown_s = cooldown_s
        self.retry_s = min(retry_s, cooldown_s)
        self.environment = environment
        self._http = http
        self._own_http = False
        self._clock = clock
        self._redact = redact or (lambda s: s)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._next_allowed: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._tasks: set[asyncio.Task[bool]] = set()
        self.sent = 0

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, *, redact: Callable[[str], str] | None = None
    ) -> Alerter:
        """Build from a service's settings: ``ALERT_WEBHOOK_URL``, ``ALERT_COOLDOWN_S``, env."""
        url = settings.alert_webhook_url
        return cls(
            url.get_secret_value() if url is not None else None,
            service=settings.service_name,
            cooldown_s=settings.alert_cooldown_s,
            redact=redact,
            environment=settings.app_env,
        )

    def _claim(self, key: str) -> int | None:
        """Take the key's slot if its cooldown is over; returns alerts suppressed before."""
        now = self._clock()
        if now < self._next_allowed.get(key, float("-inf")):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._next_allowed[key] = now + self.cooldown_s
        return self._suppressed.pop(key, 0)

    def _format(self, text: str, suppressed: int) -> str:
        where = f"{self.service}/{self.environment}" if self.environment else self.service
        body = f"[chatbus {where}] {text}"
        if suppressed:
            body += f" ({suppressed} more since the last alert)"
        return self._redact(body)

    async def fire(self, key: str, text: str) -> bool:
        """Send ``text`` unless ``key`` was sent within the cooldown. Returns whether it sent.

        Never raises. Without a webhook URL the alert is only logged.
        """
        suppressed = self._claim(key)
        if suppressed is None:
            return False
        return await self._send(key, self._format(text, suppressed))

    def fire_soon(self, key: str, text: str) -> None:
        """Like :meth:`fire`, but schedules the POST and returns at once (for sync callers).

        The cooldown is checked here, so a storm of calls costs no task per call.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("alert %s dropped: no running event loop", key)
            return
        suppressed = self._claim(key)
        if suppressed is None:
            return
        task = loop.create_task(self._send(key, self._format(text, suppressed)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, key: str, body: str) -> bool:
        log.warning("alert %s: %s", key, body, extra={"fields": {"alert": key}})
        if self.webhook_url is None:
            return False
        try:
            if self._http is None:
                self._http = aiohttp.ClientSession()
                self._own_http = True
            async with self._http.post(
                self.webhook_url, json={"text": body}, timeout=self._timeout
            ) as resp:
                if resp.status >= 300:
                    raise _WebhookStatus(f"webhook answered HTTP {resp.status}")
        except Exception as e:
            # The URL is a secret (Slack webhooks carry a token in the path): log the kind only.
            log.warning("alert webhook failed for %s: %s", key, _describe(e))
            self._next_allowed[key] = self._clock() + self.retry_s
            return False
        self.sent += 1
        return True

    async def drain(self) -> None:
        """Wait until every scheduled alert was sent or failed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish scheduled alerts and close the HTTP session if this alerter opened it."""
        await self.drain()
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    # -- the conditions ----------------------------------------------------------------------

    async def dead_letter(self, subject: str, reason: str) -> bool:
        """A message was parked on the dead-letter stream."""
        return await self.fire(*_dead_letter(subject, reason))

    def on_dead_letter(self, subject: str, reason: str) -> None:
        """Synchronous hook with the signature of ``Bus.on_dead_letter``."""
        self.fire_soon(*_dead_letter(subject, reason))

    async def llm_failure(self, agent: str, model: str, kind: str) -> bool:
        """An LLM call failed after its retries (``kind``: timeout, rate_limit, error...)."""
        return await self.fire(*_llm_failure(agent, model, kind))

    def llm_failure_soon(self, agent: str, model: str, kind: str) -> None:
        """Like :meth:`llm_failure`, scheduled without waiting."""
        self.fire_soon(*_llm_failure(agent, model, kind))

    async def budget_crossed(
        self, scope: str, period: str, level: Level, spent_usd: float, limit_usd: float
    ) -> bool:
        """Spend in ``scope`` for ``period`` crossed its soft (warn) or hard (refuse) limit."""
        return await self.fire(*_budget(scope, period, level, spent_usd, limit_usd))

    def budget_crossed_soon(
        self, scope: str, period: str, level: Level, spent_usd: float, limit_usd: float
    ) -> None:
        """Like :meth:`budget_crossed`, scheduled without waiting."""
        self.fire_soon(*_budget(scope, period, level, spent_usd, limit_usd))


class ErrorRateWatch:
    """Fires an alert when the error ratio over a sliding window exceeds ``threshold``.

    Nothing fires until the window holds at least ``min_count`` outcomes, so one failure in
    a quiet minute is not an alert. The alerter's cooldown keeps a lasting condition to one
    alert per cooldown.
    """

    def __init__(
        self,
        alerter: Alerter,
        *,
        key: str = "error_rate",
        what: str = "requests",
        window_s: float = 60.0,
        threshold: float = 0.05,
        min_count: int = 20,
        clock: Clock | None = None,
    ) -> None:
        self.alerter = alerter
        self.key = key
        self.what = what
        self.window_s = window_s
        self.threshold = threshold
        self.min_count = min_count
        self._clock = clock or alerter._clock
        self._events: deque[tuple[float, bool]] = deque()
        self._errors = 0

    def _evict(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window_s:
            _, ok = self._events.popleft()
            if not ok:
                self._errors -= 1

    @property
    def ratio(self) -> float:
        """Errors / outcomes in the current window (0 when empty)."""
        self._evict(self._clock())
        return self._errors / len(self._events) if self._events else 0.0

    def observe(self, ok: bool) -> bool:
        """Record one outcome; returns whether the window is over the threshold now."""
        now = self._clock()
        self._events.append((now, ok))
        if not ok:
            self._errors += 1
        self._evict(now)
        count = len(self._events)
        if count < self.min_count or self._errors / count <= self.threshold:
            return False
        self.alerter.fire_soon(
            self.key,
            f"error rate {self._errors / count:.0%} over the last {self.window_s:g}s "
            f"({self._errors} of {count} {self.what} failed; threshold {self.threshold:.0%})",
        )
        return True


def _dead_letter(subject: str, reason: str) -> tuple[str, str]:
    return f"dead_letter:{subject}", f"message on {subject} dead-lettered: {reason[:300]}"


def _llm_failure(agent: str, model: str, kind: str) -> tuple[str, str]:
    return f"llm_failure:{agent}:{model}", f"LLM call failed for agent {agent} ({model}): {kind}"


def _budget(
    scope: str, period: str, level: str, spent_usd: float, limit_usd: float
) -> tuple[str, str]:
    action = "requests are now refused" if level == "hard" else "warning"
    return (
        f"budget:{level}:{scope}:{period}",
        f"{level} budget crossed for {scope} ({period}): ${spent_usd:.2f} of "
        f"${limit_usd:.2f}; {action}",
    )


def _describe(e: BaseException) -> str:
    """The failure without its message where that could hold the webhook URL."""
    if isinstance(e, _WebhookStatus):
        return str(e)
    if isinstance(e, asyncio.TimeoutError):
        return "webhook timed out"
    if isinstance(e, aiohttp.ClientConnectionError):
        return f"cannot reach the webhook ({type(e).__name__})"
    return type(e).__name__
