"""Cost: token counting, spend authorization, usage events and usage reports.

``CountTokens`` / ``AuthorizeSpend`` / ``ReportUsage`` are request/reply to the cost service.
``UsageRecorded`` is an event on the JetStream stream ``COST``; its ``Nats-Msg-Id`` is its
``event_id`` so a retried publish counts once.

Money on the wire is USD as a float (reports, reasons); the cost service keeps it as integer
nano-dollars internally so sums are exact.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import Field

from chatbus.contracts.base import Message

COST_STREAM = "COST"

Decision = Literal["allow", "downgrade", "deny"]
GroupBy = Literal["day", "agent", "model", "user", "session"]
GROUP_BY: tuple[str, ...] = ("day", "agent", "model", "user", "session")


@dataclass
class Authorization:
    """What the cost service decided for one model call, as its callers hold it: the model to
    call (``downgrade`` names the cheaper one) and the reservation to settle afterwards."""

    decision: Decision
    model: str
    reservation_id: str | None = None
    reason: str = ""


class CountTokens(Message):
    """Count the tokens of a text or of chat messages in ``model``'s encoding."""

    subject: ClassVar[str] = "cost.count.v1"

    model: str
    text: str | None = None
    messages: list[dict[str, Any]] | None = None


class TokenCount(Message):
    tokens: int
    encoding: str
    # False when the model is unknown and the default encoding was used (counts approximate).
    known_model: bool = True


class AuthorizeSpend(Message):
    """Before an LLM call: may this request spend, and on which model?"""

    subject: ClassVar[str] = "cost.authorize.v1"

    request_id: str
    tenant_id: str = "default"
    user_id: str | None = None
    agent: str
    session_id: str = ""
    model: str
    cheap_model: str | None = None
    prompt_tokens: int = Field(ge=0)
    # Expected completion length for the estimate; the service's default when None.
    max_completion_tokens: int | None = Field(default=None, ge=0)


class SpendDecision(Message):
    decision: Decision
    model: str
    reservation_id: str | None = None
    reason: str = ""
    estimate_usd: float = 0.0
    # > 0: no budget rule applies to this tenant and agent, whoever the user: for this many
    # seconds the caller may allow their calls without asking (until a BudgetsLoaded says
    # the rules changed). 0: ask before every call.
    unbudgeted_s: float = Field(default=0.0, ge=0)


class BudgetsLoaded(Message):
    """Published (core NATS) by the cost service when it (re)loads its budget rules: callers
    drop what they were told was unbudgeted and ask again."""

    subject: ClassVar[str] = "cost.budgets.loaded.v1"

    ts: float = 0.0


class UsageRecorded(Message):
    """One LLM call (or cache hit) that happened. Published by agents to stream ``COST``."""

    subject: ClassVar[str] = "cost.usage.recorded.v1"

    event_id: str = Field(min_length=1, max_length=300)
    request_id: str
    tenant_id: str = "default"
    user_id: str | None = None
    agent: str = Field(min_length=1)
    session_id: str = ""
    model: str = Field(min_length=1)
    prompt_tokens: int = Field(ge=0, le=100_000_000)
    completion_tokens: int = Field(ge=0, le=100_000_000)
    cached: bool = False
    # True when the provider sent no usage and the agent counted the tokens itself.
    counted: bool = False
    reservation_id: str | None = None
    ts: float = Field(gt=0)  # unix seconds when the call finished; it picks the day bucket


class UsageBatch(Message):
    """Several :class:`UsageRecorded` in one JetStream write (agents group the events of
    concurrent messages); each counts once by its ``event_id``, as if it came alone."""

    subject: ClassVar[str] = "cost.usage.batch.v1"

    events: list[UsageRecorded] = Field(min_length=1, max_length=1024)


class ReportUsage(Message):
    """Usage between two dates (inclusive, UTC), grouped by one dimension."""

    subject: ClassVar[str] = "cost.report.v1"

    tenant_id: str = "default"
    # Every tenant, ignoring tenant_id (admins only; the gateway decides who may ask).
    all_tenants: bool = False
    from_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    to_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    group_by: GroupBy = "day"


class UsageRow(Message):
    key: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    cache_hits: int = 0


class UsageReport(Message):
    tenant_id: str | None = None  # None when the report covers every tenant
    from_date: str
    to_date: str
    group_by: GroupBy
    rows: list[UsageRow] = Field(default_factory=list)
    total: UsageRow = Field(default_factory=lambda: UsageRow(key="total"))


def forecast_month_end(daily_cost: Mapping[str, float], today: date) -> float:
    """Projected cost of ``today``'s month: average daily cost so far x days in the month.

    ``daily_cost`` maps ISO dates to USD; days outside the month or after ``today`` are ignored,
    and a missing day counts as zero.
    """
    first = today.replace(day=1)
    so_far = sum(
        cost for day, cost in daily_cost.items() if first <= date.fromisoformat(day) <= today
    )
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    return so_far / today.day * days_in_month


class ReportBudgets(Message):
    """Where each budget stands in its current period (the dashboard's budget gauges)."""

    subject: ClassVar[str] = "cost.budgets.v1"

    tenant_id: str = "default"
    # Every rule, global and other tenants' ones included (admins only; the gateway decides).
    all_tenants: bool = False


class BudgetState(Message):
    label: str
    scope: str
    id: str | None = None
    tenant: str | None = None
    period: str
    unit: str  # "usd" or "tokens"
    soft: float | None = None
    hard: float
    # Spent in the current period; None for a rule kept per agent or per user without an id.
    used: float | None = None
    state: Literal["ok", "soft", "hard", "per_subject"] = "ok"


class BudgetReport(Message):
    budgets: list[BudgetState] = Field(default_factory=list)
