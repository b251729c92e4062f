"""The cost service's handlers: count, authorize, record, report."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from opentelemetry import trace
from prometheus_client import Counter

from chatbus.contracts.cost import (
    AuthorizeSpend,
    CountTokens,
    ReportUsage,
    SpendDecision,
    TokenCount,
    UsageRecorded,
    UsageReport,
)
from chatbus.errors import RemoteError
from chatbus.metrics import Metrics
from chatbus.tokens import TokenCounter
from chatbus_cost.budgets import (
    BudgetBook,
    BudgetRule,
    Period,
    Scope,
    Who,
    period_id,
    subject_id,
)
from chatbus_cost.ledger import Ledger, Limit, Usage
from chatbus_cost.prices import NANO, PriceTable, usd
from chatbus_cost.reports import build_report

log = logging.getLogger("chatbus_cost.handlers")

SCOPES: tuple[Scope, ...] = ("global", "tenant", "agent", "user")
PERIODS: tuple[Period, ...] = ("daily", "monthly")


@dataclass
class Tuning:
    reservation_ttl_s: float = 120.0
    default_completion_tokens: int = 512
    seen_ttl_s: int = 86400
    # How long a caller may skip authorize where no budget can apply (0: never skip).
    unbudgeted_ttl_s: float = 30.0


def amount(rule: BudgetRule, units: int) -> str:
    return f"${usd(units):.2f}" if rule.unit == "usd" else f"{units:,} tokens"


def who_of(event: UsageRecorded) -> Who:
    return Who(event.tenant_id, event.agent, event.user_id)


class CostService:
    """Holds the ports the handlers use; one per service process."""

    def __init__(
        self,
        ledger: Ledger,
        prices: PriceTable,
        budgets: BudgetBook,
        tokens: TokenCounter,
        metrics: Metrics | None = None,
        tuning: Tuning | None = None,
        unpriced: Counter | None = None,
    ) -> None:
        self.ledger = ledger
        self.prices = prices
        self.budgets = budgets
        self.tokens = tokens
        self.metrics = metrics
        self.tuning = tuning or Tuning()
        self.unpriced = unpriced  # events whose model had no price, by model

    async def count(self, ask: CountTokens) -> TokenCount:
        if (ask.text is None) == (ask.messages is None):
            raise RemoteError("invalid", "give exactly one of 'text' or 'messages'")
        enc, known = self.tokens.encoding_for(ask.model)
        if ask.messages is not None:
            n = self.tokens.count_messages(ask.messages, ask.model)
        else:
            n = self.tokens.count_text(ask.text or "", ask.model)
        return TokenCount(tokens=n, encoding=enc.name, known_model=known)

    def limits(self, who: Who, now: float) -> list[tuple[BudgetRule, Limit]]:
        out = []
        for rule in self.budgets.applicable(who):
            subject = subject_id(rule.scope, who)
            if subject is None:
                continue
            counter = f"{period_id(rule.period, now)}:{subject}"
            unit = "usd" if rule.unit == "usd" else "tok"
            out.append(
                (rule, Limit(counter, unit, rule.limit_units(True), rule.limit_units(False)))
            )
        return out

    async def authorize(self, ask: AuthorizeSpend) -> SpendDecision:
        """Reserve the estimated cost against every applicable budget, atomically."""
        who = Who(ask.tenant_id, ask.agent, ask.user_id)
        now = time.time()
        ruled = self.limits(who, now)
        completion = ask.max_completion_tokens
        if completion is None:
            completion = self.tuning.default_completion_tokens
        tokens = ask.prompt_tokens + completion
        main = (self.prices.cost_nusd(ask.model, ask.prompt_tokens, completion), tokens)
        cheap = None
        if ask.cheap_model and ask.cheap_model != ask.model:
            cheap = (self.prices.cost_nusd(ask.cheap_model, ask.prompt_tokens, completion), tokens)
        rid = uuid.uuid4().hex
        got = await self.ledger.reserve(
            rid,
            [lim for _, lim in ruled],
            main=main,
            cheap=cheap,
            now_ms=int(now * 1000),
            ttl_ms=int(self.tuning.reservation_ttl_s * 1000),
        )
        rule = ruled[got.limit_index - 1][0] if got.limit_index else None
        if got.decision == "deny":
            assert rule is not None
            reason = (
                f"{rule.label()} reached: {amount(rule, got.used)} used of "
                f"{amount(rule, rule.limit_units(False))}"
            )
            log.info("deny %s (%s/%s): %s", ask.request_id, ask.tenant_id, ask.agent, reason)
            return SpendDecision(decision="deny", model=ask.model, reason=reason)
        reason = ""
        if rule is not None:
            soft = rule.limit_units(True) or rule.limit_units(False)
            reason = (
                f"{rule.label()}: {amount(rule, got.used)} used, soft limit {amount(rule, soft)}"
            )
        if got.decision == "downgrade" and cheap is not None:
            return SpendDecision(
                decision="downgrade",
                model=ask.cheap_model or ask.model,
                reservation_id=rid,
                reason=f"{reason}; using the cheaper model {ask.cheap_model}",
                estimate_usd=usd(cheap[0]),
            )
        if rule is not None:
            reason += "; no cheaper model configured"
        free = not ruled and not self.budgets.may_apply(ask.tenant_id, ask.agent)
        return SpendDecision(
            decision="allow",
            model=ask.model,
            reservation_id=rid,
            reason=reason,
            estimate_usd=usd(main[0]),
            unbudgeted_s=self.tuning.unbudgeted_ttl_s if free else 0.0,
        )

    def counters(self, who: Who, ts: float) -> list[str]:
        """Every spend counter an event adds to (all scopes, both periods)."""
        out = []
        for period in PERIODS:
            pid = period_id(period, ts)
            for scope in SCOPES:
                subject = subject_id(scope, who)
                if subject is not None:
                    out.append(f"{pid}:{subject}")
        return out

    async def record(self, event: UsageRecorded) -> None:
        """Count one usage event exactly once."""
        await self.record_batch([event])

    async def record_batch(self, events: list[UsageRecorded]) -> None:
        """Count usage events exactly once each (called by the JetStream consumer)."""
        items = [Usage(e, self.cost_of(e), self.counters(who_of(e), e.ts)) for e in events]
        trace.get_current_span().set_attributes(
            {
                "chatbus.agent": sorted({e.agent for e in events}),
                "gen_ai.request.model": sorted({e.model for e in events}),
                "gen_ai.usage.input_tokens": sum(e.prompt_tokens for e in events),
                "gen_ai.usage.output_tokens": sum(e.completion_tokens for e in events),
                "chatbus.cost_usd": sum(i.nusd for i in items) / NANO,
                "chatbus.cache_hits": sum(1 for e in events if e.cached),
            }
        )
        fresh = await self.ledger.record_many(items, seen_ttl_s=self.tuning.seen_ttl_s)
        gauges: dict[tuple[str, str], BudgetRule] = {}
        for item, new in zip(items, fresh, strict=True):
            event = item.event
            if not new:
                log.info("usage event %s already counted; skipped", event.event_id)
                continue
            if not self.prices.lookup(event.model)[1]:
                log.warning("usage event %s: model %r has no price", event.event_id, event.model)
                if self.unpriced is not None:
                    self.unpriced.labels(event.model).inc()
            if self.metrics is not None:
                self._count(event, item.nusd)
                for rule, subject in self._gauged(who_of(event)):
                    gauges[(f"{period_id(rule.period, event.ts)}:{subject}", subject)] = rule
        if self.metrics is not None:
            for (counter, subject), rule in gauges.items():
                spent, _ = await self.ledger.spent(counter)
                left = (rule.limit_units(False) - spent) / NANO
                self.metrics.budget_remaining.labels(subject, rule.period).set(left)

    def cost_of(self, event: UsageRecorded) -> int:
        """Nano-dollars an event costs (a cache hit costs nothing)."""
        if event.cached:
            return 0
        return self.prices.cost_nusd(event.model, event.prompt_tokens, event.completion_tokens)

    def _count(self, event: UsageRecorded, nusd: int) -> None:
        assert self.metrics is not None
        m = self.metrics
        if event.cached:
            return  # the agent counts cache hits and misses where it looks them up
        m.tokens.labels(event.agent, event.model, "prompt").inc(event.prompt_tokens)
        m.tokens.labels(event.agent, event.model, "completion").inc(event.completion_tokens)
        m.cost.labels(event.agent, event.model).inc(nusd / NANO)

    def _gauged(self, who: Who) -> list[tuple[BudgetRule, str]]:
        """USD rules with one counter (global or naming one subject): their remaining budget
        is a gauge; per-each rules would make one series per user."""
        out = []
        for rule in self.budgets.applicable(who):
            if rule.unit != "usd" or (rule.scope != "global" and rule.id is None):
                continue
            subject = subject_id(rule.scope, who)
            if subject is not None:
                out.append((rule, subject))
        return out

    async def report(self, ask: ReportUsage) -> UsageReport:
        return await build_report(self.ledger, ask)
