"""A circuit breaker that reflects a model's health, not one caller's bad luck or bad input.

It opens when, over the last ``window_s``, at least ``min_requests`` requests were seen, at least
``failure_rate`` of them failed, and the failures came from at least ``min_callers`` different
callers (sessions). Each request counts once, whatever its own retries did; refusals of the
request itself (4xx: bad input, too long a prompt) show the model is up and count as successes.
Open, it refuses calls for ``open_s``; then it lets one probe through at a time (half-open),
and the first probe the model answers closes it at once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Admission = Literal["closed", "probe"]


@dataclass
class Breaker:
    window_s: float = 30.0
    min_requests: int = 20
    min_callers: int = 3
    failure_rate: float = 0.5
    open_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    opened_at: float | None = None
    probing: bool = False
    # (when, failed, caller) of each request in the window, oldest first
    outcomes: deque[tuple[float, bool, str]] = field(default_factory=deque)

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def admit(self) -> Admission | None:
        """``closed``: call normally; ``probe``: the one trial call of a half-open breaker."""
        if self.opened_at is None:
            return "closed"
        if self.probing or self.clock() - self.opened_at < self.open_s:
            return None
        self.probing = True
        return "probe"

    def record(self, admission: Admission, *, failed: bool, caller: str) -> None:
        """The outcome of one admitted request (after its retries)."""
        now = self.clock()
        if admission == "probe":
            self.probing = False
            if failed:
                self.opened_at = now  # still down: wait another open_s
            else:
                self.opened_at = None
                self.outcomes.clear()  # a fresh start: the outage is over
            return
        self.outcomes.append((now, failed, caller))
        while self.outcomes and self.outcomes[0][0] < now - self.window_s:
            self.outcomes.popleft()
        if failed and self.opened_at is None and self._unhealthy():
            self.opened_at = now

    def abandon(self, admission: Admission) -> None:
        """The admitted call ended without an outcome (its caller left): free the probe slot."""
        if admission == "probe":
            self.probing = False

    def _unhealthy(self) -> bool:
        total = len(self.outcomes)
        if total < self.min_requests:
            return False
        failing = [caller for _, failed, caller in self.outcomes if failed]
        return len(failing) >= self.failure_rate * total and len(set(failing)) >= self.min_callers
