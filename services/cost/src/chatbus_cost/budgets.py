"""Budgets: spending limits per period, per scope, in USD or tokens.

Config (JSON or YAML; a file or the ``BUDGETS_JSON`` env var)::

    budgets:
      - {scope: global, period: monthly, unit: usd, soft: 400, hard: 500}
      - {scope: user, period: daily, unit: usd, soft: 0.5, hard: 1}     # each user
      - {scope: agent, id: sales, period: daily, unit: tokens, hard: 2000000}

``scope`` is ``global`` (all traffic), ``tenant``, ``agent`` or ``user``; without ``id`` a rule
applies to each tenant/agent/user separately, with ``id`` to that one only. ``tenant`` (optional)
limits a rule to one tenant. Past ``soft`` the agent downgrades to its cheaper model; past
``hard`` it answers with a template and no LLM call. A negative, zero or absurd limit, or a soft
limit above the hard one, is refused at start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from chatbus_cost.prices import NANO, read_mapping

Scope = Literal["global", "tenant", "agent", "user"]
Period = Literal["daily", "monthly"]
Unit = Literal["usd", "tokens"]

# Above these a limit is a typo (a missing decimal point), not a budget.
ABSURD: dict[str, float] = {"usd": 1_000_000.0, "tokens": 100_000_000_000.0}


class BudgetError(ValueError):
    """The budget config is unusable; the message says which rule and why."""


class BudgetRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope
    period: Period
    unit: Unit = "usd"
    hard: float
    soft: float | None = None
    id: str | None = None
    tenant: str | None = None

    @model_validator(mode="after")
    def _sane(self) -> BudgetRule:
        top = ABSURD[self.unit]
        if not self.hard > 0:
            raise ValueError(f"hard limit must be > 0, got {self.hard:g}")
        if self.hard > top:
            raise ValueError(f"hard limit {self.hard:g} {self.unit} is absurd (max {top:g})")
        if self.soft is not None:
            if self.soft < 0:
                raise ValueError(f"soft limit must be >= 0, got {self.soft:g}")
            if self.soft > self.hard:
                raise ValueError(f"soft limit {self.soft:g} is above hard limit {self.hard:g}")
        if self.scope == "global" and self.id is not None:
            raise ValueError("a global budget takes no id")
        return self

    def label(self) -> str:
        who = self.scope if self.scope == "global" else f"{self.scope} {self.id or '(each)'}"
        return f"{self.period} {self.unit} budget for {who}"

    def limit_units(self, soft: bool) -> int:
        """The limit in ledger units (nano-dollars or tokens); 0 = no soft limit."""
        value = self.soft if soft else self.hard
        if value is None:
            return 0
        return round(value * NANO) if self.unit == "usd" else round(value)


@dataclass(frozen=True)
class Who:
    tenant_id: str
    agent: str
    user_id: str | None


def period_id(period: Period, ts: float) -> str:
    day = datetime.fromtimestamp(ts, UTC)
    return day.strftime("d%Y%m%d" if period == "daily" else "m%Y%m")


def subject_id(scope: Scope, who: Who) -> str | None:
    """The counter a scope keeps for ``who``; None when ``who`` has no such subject."""
    if scope == "global":
        return "global"
    if scope == "tenant":
        return f"tenant:{who.tenant_id}"
    if scope == "agent":
        return f"agent:{who.agent}"  # agents serve every tenant; their budget is theirs
    if who.user_id is None:
        return None
    return f"user:{who.tenant_id}:{who.user_id}"


class BudgetBook:
    """The validated budget rules, and which of them apply to a request."""

    def __init__(self, rules: list[BudgetRule]) -> None:
        self.rules = rules

    def applicable(self, who: Who) -> list[BudgetRule]:
        out = []
        for r in self.rules:
            if r.tenant is not None and r.tenant != who.tenant_id:
                continue
            if r.id is not None:
                mine = {"tenant": who.tenant_id, "agent": who.agent, "user": who.user_id}
                if mine.get(r.scope) != r.id:
                    continue
            if r.scope == "user" and who.user_id is None:
                continue
            out.append(r)
        return out

    def may_apply(self, tenant_id: str, agent: str) -> bool:
        """Whether any rule can apply to a request of ``agent`` in ``tenant_id``, whoever its
        user (a per-user rule of the tenant counts, whichever user it names)."""
        for r in self.rules:
            if r.tenant is not None and r.tenant != tenant_id:
                continue
            if r.id is None or r.scope == "user":
                return True
            if {"tenant": tenant_id, "agent": agent}.get(r.scope) == r.id:
                return True
        return False

    @classmethod
    def parse(cls, raw: Any) -> BudgetBook:
        if raw is None:
            return cls([])
        if isinstance(raw, dict):
            raw = raw.get("budgets", [])
        if not isinstance(raw, list):
            raise BudgetError("budgets must be a list of rules (or {budgets: [...]})")
        rules = []
        for i, item in enumerate(raw, 1):
            try:
                rules.append(BudgetRule.model_validate(item))
            except ValidationError as e:
                why = "; ".join(
                    (".".join(str(p) for p in err["loc"]) + ": " if err["loc"] else "")
                    + err["msg"].removeprefix("Value error, ")
                    for err in e.errors()
                )
                raise BudgetError(f"budget rule #{i} {item!r} refused: {why}") from None
        return cls(rules)

    @classmethod
    def load(cls, path: Path | None, env_json: str | None) -> BudgetBook:
        """Rules from ``env_json`` when set, else from the file at ``path``, else none."""
        if env_json:
            try:
                return cls.parse(json.loads(env_json))
            except json.JSONDecodeError as e:
                raise BudgetError(f"BUDGETS_JSON is not valid JSON: {e}") from e
        if path is None:
            return cls([])
        try:
            return cls.parse(read_mapping(path, "budget file"))
        except ValueError as e:
            raise BudgetError(str(e)) from e
