"""Usage reports: read the daily aggregates and group them by one dimension."""

from __future__ import annotations

from datetime import date, timedelta

from chatbus.contracts.cost import ReportUsage, UsageReport, UsageRow
from chatbus.errors import RemoteError
from chatbus_cost.ledger import SEP, Ledger
from chatbus_cost.prices import usd

MAX_DAYS = 400
# Position of each dimension in an aggregate field ``metric SEP agent SEP model SEP user``.
DIMENSION = {"agent": 1, "model": 2, "user": 3}


def days_between(from_date: str, to_date: str) -> list[str]:
    """Every ISO day from ``from_date`` to ``to_date`` inclusive; RemoteError when invalid."""
    try:
        start, end = date.fromisoformat(from_date), date.fromisoformat(to_date)
    except ValueError as e:
        raise RemoteError("invalid", f"bad date: {e}") from None
    if end < start:
        raise RemoteError("invalid", f"'to' ({to_date}) is before 'from' ({from_date})")
    n = (end - start).days + 1
    if n > MAX_DAYS:
        raise RemoteError("invalid", f"range of {n} days is too long (max {MAX_DAYS})")
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


class Tally:
    """Sums of the five metrics per group key."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, int]] = {}

    def add(self, key: str, metric: str, value: int) -> None:
        group = self.groups.setdefault(key, dict.fromkeys("pcnrh", 0))
        group[metric] += value

    def rows(self) -> list[UsageRow]:
        return [row(k, g) for k, g in sorted(self.groups.items())]


def row(key: str, g: dict[str, int]) -> UsageRow:
    return UsageRow(
        key=key,
        prompt_tokens=g["p"],
        completion_tokens=g["c"],
        tokens=g["p"] + g["c"],
        cost_usd=usd(g["n"]),
        requests=g["r"],
        cache_hits=g["h"],
    )


async def build_report(ledger: Ledger, ask: ReportUsage) -> UsageReport:
    """The report ``ask`` describes; totals are exact sums of the rows."""
    days = days_between(ask.from_date, ask.to_date)
    if ask.all_tenants:
        members = await ledger.redis.call("SMEMBERS", ledger.tenants_key)
        tenants = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
    else:
        tenants = [ask.tenant_id]
    sessions = ask.group_by == "session"
    plan = [(tenant, day) for tenant in tenants for day in days]
    flat = await ledger.redis.batch(
        [("HGETALL", ledger.agg_key(tenant, day, sessions=sessions)) for tenant, day in plan]
    )
    results = [dict(zip(f[::2], f[1::2], strict=True)) for f in flat]
    tally, total = Tally(), dict.fromkeys("pcnrh", 0)
    if ask.group_by == "day":  # a day without usage is a row of zeros, not a gap
        for day in days:
            tally.groups[day] = dict.fromkeys("pcnrh", 0)
    for (_, day), fields in zip(plan, results, strict=True):
        for raw_field, raw_value in fields.items():
            parts = _text(raw_field).split(SEP)
            metric, value = parts[0], int(raw_value)
            if ask.group_by == "day":
                key = day
            elif sessions:
                key = parts[1]
            else:
                key = parts[DIMENSION[ask.group_by]]
            tally.add(key, metric, value)
            total[metric] += value
    return UsageReport(
        tenant_id=None if ask.all_tenants else ask.tenant_id,
        from_date=days[0],
        to_date=days[-1],
        group_by=ask.group_by,
        rows=tally.rows(),
        total=row("total", total),
    )


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
