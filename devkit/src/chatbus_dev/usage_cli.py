"""``chatbus usage``: daily tokens and cost, totals, and a month-end forecast.

The forecast is linear: the month's cost so far divided by the days elapsed (today counts as a
whole day), times the days in the month. It needs no history beyond the current month and is
honest about what it is: a run-rate, not a model of weekly patterns.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import os
import sys
from datetime import UTC, date, datetime, timedelta
from typing import TextIO

import nats

from chatbus.bus import Bus
from chatbus.contracts.cost import UsageReport, forecast_month_end
from chatbus.cost_client import BusCosts
from chatbus.errors import BusError, NoResponders


def render(report: UsageReport, days: int, today: date) -> str:
    """The table ``chatbus usage`` prints for a ``group_by=day`` report."""
    shown_from = (today - timedelta(days=days - 1)).isoformat()
    rows = [r for r in report.rows if r.key >= shown_from]
    lines = [f"{'date':<12}{'tokens':>14}{'cost (USD)':>14}{'requests':>10}{'cache hits':>12}"]
    tokens = cost = requests = hits = 0.0
    for r in rows:
        lines.append(
            f"{r.key:<12}{r.tokens:>14,}{r.cost_usd:>14.4f}{r.requests:>10,}{r.cache_hits:>12,}"
        )
        tokens, cost = tokens + r.tokens, cost + r.cost_usd
        requests, hits = requests + r.requests, hits + r.cache_hits
    lines.append("-" * 62)
    lines.append(
        f"{'total':<12}{int(tokens):>14,}{cost:>14.4f}{int(requests):>10,}{int(hits):>12,}"
    )
    month = {r.key: r.cost_usd for r in report.rows}
    forecast = forecast_month_end(month, today)
    lines.append(
        f"forecast for {today:%B %Y}: ${forecast:,.2f} "
        f"(month so far / {today.day} days x {calendar.monthrange(today.year, today.month)[1]})"
    )
    return "\n".join(lines) + "\n"


async def print_usage(
    nats_url: str,
    days: int,
    *,
    tenant_id: str | None = "default",
    today: date | None = None,
    out: TextIO | None = None,
) -> None:
    """Ask the cost service for the last ``days`` days (and the whole month) and print them.

    ``tenant_id=None`` reports every tenant.
    """
    today = today or datetime.now(UTC).date()
    start = min(today - timedelta(days=days - 1), today.replace(day=1))

    async def quiet(e: Exception) -> None:
        return None  # the caller reports the failure once, without nats-py's tracebacks

    nc = await nats.connect(
        nats_url,
        name="chatbus-cli",
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,
        connect_timeout=2,
        error_cb=quiet,
    )
    bus = Bus(nc, service="chatbus-cli")
    try:
        report = await BusCosts(bus).report(
            tenant_id=tenant_id,
            from_date=start.isoformat(),
            to_date=today.isoformat(),
            group_by="day",
        )
    finally:
        await bus.drain(timeout=2)
    (out or sys.stdout).write(render(report, days, today))


def parser() -> argparse.ArgumentParser:
    """The arguments of ``chatbus usage`` (``./dev usage``)."""
    parser = argparse.ArgumentParser(prog="chatbus usage", description=__doc__)
    parser.add_argument("--days", type=int, default=14, help="days to show (default 14)")
    parser.add_argument("--tenant", default="default", help="tenant id (default 'default')")
    parser.add_argument("--all-tenants", action="store_true", help="sum every tenant")
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``chatbus usage``; returns the exit code."""
    parser_ = parser()
    args = parser_.parse_args(argv)
    if not 1 <= args.days <= 366:
        parser_.error("--days must be between 1 and 366")
    tenant = None if args.all_tenants else args.tenant
    try:
        asyncio.run(print_usage(args.nats_url, args.days, tenant_id=tenant))
    except NoResponders:
        sys.stderr.write(
            f"chatbus usage: no cost service answers on {args.nats_url} "
            "(start it with `./dev up`)\n"
        )
        return 1
    except (BusError, OSError, nats.errors.Error) as e:
        sys.stderr.write(f"chatbus usage: cannot get usage from the cost service: {e}\n")
        return 1
    return 0
