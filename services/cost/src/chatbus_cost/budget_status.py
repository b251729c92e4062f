"""Where each budget stands in its current period: ``cost.budgets.v1`` (the dashboard's gauges).

A tenant sees the rules that limit it (its tenant budget, its users' budgets); an admin
(``all_tenants``) sees every rule, the global and per-agent ones included. A rule kept for
each agent or each user separately has no single figure: it is listed with ``used=None``; a
rule kept for each tenant shows the figure of the tenant asking (for an admin key: the tenant
it acts for, ``X-Tenant-Id``).
"""

from __future__ import annotations

import time

from chatbus.contracts.cost import BudgetReport, BudgetState, ReportBudgets
from chatbus_cost.budgets import BudgetBook, BudgetRule, period_id
from chatbus_cost.ledger import Ledger
from chatbus_cost.prices import usd


def counter_subject(rule: BudgetRule, tenant: str) -> str | None:
    """The one counter a rule keeps for ``tenant``; None when it keeps one per agent or user."""
    if rule.scope == "global":
        return "global"
    if rule.scope == "tenant":
        return f"tenant:{rule.id or tenant}"
    if rule.id is None:
        return None
    if rule.scope == "agent":
        return f"agent:{rule.id}"
    return f"user:{rule.tenant or tenant}:{rule.id}"


def visible(rule: BudgetRule, ask: ReportBudgets) -> bool:
    if ask.all_tenants:
        return True
    if rule.tenant is not None and rule.tenant != ask.tenant_id:
        return False
    if rule.scope == "tenant":
        return rule.id in (None, ask.tenant_id)
    return rule.scope == "user"


async def budget_report(
    ledger: Ledger, book: BudgetBook, ask: ReportBudgets, now: float | None = None
) -> BudgetReport:
    now = time.time() if now is None else now
    out = []
    for rule in book.rules:
        if not visible(rule, ask):
            continue
        state = BudgetState(
            label=rule.label(),
            scope=rule.scope,
            id=rule.id,
            # the tenant the figure is for (an admin's figures are for the tenant it acts for)
            tenant=rule.tenant or (ask.tenant_id if rule.scope in ("tenant", "user") else None),
            period=rule.period,
            unit=rule.unit,
            soft=rule.soft,
            hard=rule.hard,
            state="per_subject",
        )
        subject = counter_subject(rule, ask.tenant_id)
        if subject is not None:
            nusd, tokens = await ledger.spent(f"{period_id(rule.period, now)}:{subject}")
            used = usd(nusd) if rule.unit == "usd" else float(tokens)
            level = "ok"
            if used >= rule.hard:
                level = "hard"
            elif rule.soft is not None and used >= rule.soft:
                level = "soft"
            state = state.model_copy(update={"used": used, "state": level})
        out.append(state)
    return BudgetReport(budgets=out)
