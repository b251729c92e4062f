"""One deadline per message: the absolute time (Unix seconds) by which its caller needs the answer.

The gateway sets it once, from ``REQUEST_TIMEOUT_S`` or an async job's own deadline, in
``ChatRequest.deadline``; every hop after that (agent, LLM attempts, retries, tools, memory,
costs, handoffs) works within what is left and stops when it is gone. Bus requests also carry
it in the ``Chatbus-Deadline`` header, so a responder skips a request whose caller has already
given up instead of working for nobody. Absolute times assume the hosts' clocks agree (NTP),
as they do in any cluster; a relative budget would lose the time a job waited in its queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

DEADLINE_HEADER = "Chatbus-Deadline"

# The deadline of the message being handled in this task (None: no message, or none given):
# what a client deep below (the Redis link waiting out a failover) may spend without being
# handed the deadline explicitly.
_current: ContextVar[float | None] = ContextVar("chatbus_deadline", default=None)


def after(seconds: float) -> float:
    """The deadline ``seconds`` from now."""
    return time.time() + seconds


def remaining(deadline: float | None, default: float | None = None) -> float:
    """Seconds left before ``deadline`` (0 when past); ``default`` (or inf) when there is none."""
    if deadline is None:
        return float("inf") if default is None else default
    return max(0.0, deadline - time.time())


def budget(deadline: float | None, cap: float, share: float = 1.0) -> float:
    """What one step may spend: ``share`` of the time left, never more than ``cap``."""
    return min(cap, remaining(deadline) * share)


def earliest(*deadlines: float | None) -> float | None:
    """The first of the given deadlines (``None`` entries ignored)."""
    known = [d for d in deadlines if d is not None]
    return min(known) if known else None


def parse_header(value: str | None) -> float | None:
    """The deadline a ``Chatbus-Deadline`` header names; ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def header_value(deadline: float) -> str:
    return f"{deadline:.3f}"


def current() -> float | None:
    """The deadline of the message this task works on (see :func:`bound`), if any."""
    return _current.get()


@contextmanager
def bound(deadline: float | None) -> Iterator[None]:
    """Within the ``with``, :func:`current` is ``deadline`` (or an earlier outer one)."""
    token = _current.set(earliest(deadline, _current.get()))
    try:
        yield
    finally:
        _current.reset(token)


class DeadlineExceeded(Exception):
    """The message's deadline passed: its caller no longer waits, so the work stops."""
