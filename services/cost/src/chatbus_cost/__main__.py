"""The cost service: ``python -m chatbus_cost``.

Answers ``cost.count.v1``, ``cost.authorize.v1`` and ``cost.report.v1`` (queue group ``cost``)
and consumes ``cost.usage.recorded.v1`` from the ``COST`` stream (durable ``cost-usage``,
acked after counting; malformed events go to the dead-letter stream with a log line).

Bad budgets or prices stop it at start-up with a message naming the rule, exit code 1.
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

from prometheus_client import Counter
from pydantic import Field

from chatbus.contracts.cost import (
    COST_STREAM,
    AuthorizeSpend,
    BudgetsLoaded,
    CountTokens,
    ReportBudgets,
    ReportUsage,
    UsageBatch,
    UsageRecorded,
)
from chatbus.cost_client import ensure_cost_stream
from chatbus.jetstream import ConsumerSpec, consume_batches, ensure_dlq
from chatbus.metrics import Metrics
from chatbus.runtime import Runtime, Wire, run
from chatbus.settings import ServiceSettings
from chatbus.tokens import TokenCounter
from chatbus_cost.budget_status import budget_report
from chatbus_cost.budgets import BudgetBook, BudgetError
from chatbus_cost.handlers import CostService, Tuning
from chatbus_cost.ledger import Ledger
from chatbus_cost.prices import PriceError, PriceTable

QUEUE = "cost"


class CostSettings(ServiceSettings):
    service_name: str = "cost"
    port: int = Field(default=8084, ge=0, le=65535)
    # JSON/YAML {model: {input, output}} in USD per 1M tokens, over the built-in defaults.
    price_file: Path | None = None
    # JSON/YAML budget rules (see chatbus_cost.budgets); BUDGETS_JSON wins when both are set.
    budgets_file: Path | None = None
    budgets_json: str | None = None
    # A reservation never settled (the agent died mid-call) stops counting after this long.
    reservation_ttl_s: float = Field(default=120.0, gt=0, le=86400)
    # Completion length assumed when reserving, unless the agent says otherwise.
    default_completion_tokens: int = Field(default=512, ge=1, le=1_000_000)
    # How long an event id is remembered to drop redeliveries: must outlast the longest
    # outage of this service (an event counted but not acked comes back when it restarts).
    # About 100 bytes of Redis per event for this long.
    seen_ttl_s: int = Field(default=86400, ge=60)
    redis_prefix: str = "cost:"  # every Redis key of the cost service (it owns them)
    usage_durable: str = "cost-usage"
    # Usage events counted per Redis round trip.
    usage_batch: int = Field(default=128, ge=1, le=1024)
    # An event taken but not acked (the service died) is redelivered after this long.
    usage_ack_wait_s: float = Field(default=30.0, ge=1, le=3600)
    stream_max_age_days: float = Field(default=90.0, gt=0)
    # Agents skip asking before calls of a tenant and agent no budget applies to for this
    # long (they also forget it when this service starts: BudgetsLoaded). 0: always ask.
    unbudgeted_ttl_s: float = Field(default=30.0, ge=0, le=3600)


def make_wire(settings: CostSettings) -> Wire:
    """Load prices and budgets (raising on bad config) and return the service's ``wire``."""
    prices = PriceTable.load(settings.price_file)
    budgets = BudgetBook.load(settings.budgets_file, settings.budgets_json)
    return functools.partial(wire, settings=settings, prices=prices, budgets=budgets)


async def wire(
    rt: Runtime, *, settings: CostSettings, prices: PriceTable, budgets: BudgetBook
) -> None:
    metrics = Metrics(rt.registry, settings.service_name)
    service = CostService(
        Ledger(rt.redis_link(), settings.redis_prefix),
        prices,
        budgets,
        TokenCounter(),
        metrics,
        Tuning(
            reservation_ttl_s=settings.reservation_ttl_s,
            default_completion_tokens=settings.default_completion_tokens,
            seen_ttl_s=settings.seen_ttl_s,
            unbudgeted_ttl_s=settings.unbudgeted_ttl_s,
        ),
        unpriced=Counter(
            "chatbus_cost_unpriced_events_total",
            "Usage events for models without a price (charged the default price)",
            ["model"],
            registry=rt.registry,
        ),
    )
    service.tokens.encoding_for("gpt-4o")  # load the BPE files now, not on the first request

    await ensure_dlq(rt.bus)
    await ensure_cost_stream(rt.bus, max_age_s=settings.stream_max_age_days * 86400)
    await rt.bus.subscribe(CountTokens.subject, CountTokens, service.count, queue=QUEUE)
    await rt.bus.subscribe(AuthorizeSpend.subject, AuthorizeSpend, service.authorize, queue=QUEUE)
    await rt.bus.subscribe(ReportUsage.subject, ReportUsage, service.report, queue=QUEUE)
    await rt.bus.subscribe(
        ReportBudgets.subject,
        ReportBudgets,
        functools.partial(budget_report, service.ledger, budgets),
        queue=QUEUE,
    )
    spec = ConsumerSpec(
        stream=COST_STREAM,
        durable=settings.usage_durable,
        subject=UsageRecorded.subject,
        batch=settings.usage_batch,
        # A well-formed event only fails while Redis is down: keep retrying (days, not
        # seconds) instead of parking it. Malformed events are dead-lettered at once anyway.
        max_deliver=10_000,
        backoff=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
        ack_wait=settings.usage_ack_wait_s,
    )
    rt.bus.spawn(consume_batches(rt.bus, spec, UsageRecorded, service.record_batch))

    async def on_batches(batches: list[UsageBatch]) -> None:
        await service.record_batch([e for b in batches for e in b.events])

    grouped = replace(
        spec, durable=f"{settings.usage_durable}-batch", subject=UsageBatch.subject, batch=8
    )
    rt.bus.spawn(consume_batches(rt.bus, grouped, UsageBatch, on_batches))
    # Callers told "unbudgeted" by an earlier instance (other rules, perhaps) ask again.
    await rt.bus.publish(BudgetsLoaded(ts=time.time()))


def main() -> None:
    settings = CostSettings()
    try:
        wire_fn = make_wire(settings)
    except (BudgetError, PriceError) as e:
        raise SystemExit(f"cost: refusing to start: {e}") from None
    run(settings, wire_fn)


if __name__ == "__main__":
    main()
