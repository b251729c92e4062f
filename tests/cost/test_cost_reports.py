"""Reports equal the sum of the recorded events, whatever the grouping; reservations expire."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from chatbus.errors import RemoteError
from chatbus.redis_link import RedisLink
from chatbus_cost.ledger import Ledger, Limit
from chatbus_cost.prices import PriceTable, usd


async def test_report_equals_the_sum_of_recorded_events(start_cost, make_event, uid: str) -> None:
    world = await start_cost()
    rng = random.Random(7)
    now = time.time()
    prices = PriceTable()
    expected: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0, 0, 0])
    )
    events = []
    for i in range(120):
        ev = make_event(
            i,
            tenant_id=uid,
            agent=rng.choice(["support", "sales"]),
            model=rng.choice(["gpt-4o", "gpt-4o-mini", "some-unknown-model"]),
            user_id=rng.choice(["ann", "bob", "cyd"]),
            session_id=rng.choice(["s1", "s2"]),
            prompt_tokens=rng.randint(0, 5000),
            completion_tokens=rng.randint(0, 900),
            cached=rng.random() < 0.1,
            ts=now - 86400 * rng.randint(0, 3),
        )
        events.append(ev)
        nusd = (
            0 if ev.cached else prices.cost_nusd(ev.model, ev.prompt_tokens, ev.completion_tokens)
        )
        tokens = 0 if ev.cached else ev.prompt_tokens + ev.completion_tokens
        day = datetime.fromtimestamp(ev.ts, UTC).date().isoformat()
        keys = {
            "day": day,
            "agent": ev.agent,
            "model": ev.model,
            "user": ev.user_id,
            "session": ev.session_id,
        }
        for group, key in keys.items():
            row = expected[group][key]
            row[0] += tokens
            row[1] += nusd
            row[2] += 1
            row[3] += int(ev.cached)
    for ev in events:
        await world.publish(ev)
    today = datetime.now(UTC).date()
    start = (today - timedelta(days=3)).isoformat()
    deadline = time.monotonic() + 10
    while True:
        report = await world.report(uid, from_date=start, to_date=today.isoformat())
        if report.total.requests >= 120 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)  # allowed: the consumer counts asynchronously
    assert report.total.requests == 120
    for group, want in expected.items():
        got = await world.report(uid, from_date=start, to_date=today.isoformat(), group_by=group)
        rows = {
            r.key: (r.tokens, r.cost_usd, r.requests, r.cache_hits) for r in got.rows if r.requests
        }
        assert rows == {k: (v[0], usd(v[1]), v[2], v[3]) for k, v in want.items()}, group
        assert got.total.cost_usd == usd(sum(v[1] for v in want.values()))
        assert got.total.tokens == sum(v[0] for v in want.values())


async def test_day_report_has_a_row_per_day_and_tenants_stay_apart(
    start_cost, make_event, uid: str
) -> None:
    world = await start_cost()
    await world.publish(make_event(1, tenant_id=f"{uid}-a"))
    await world.publish(make_event(2, tenant_id=f"{uid}-b", prompt_tokens=1))
    today = datetime.now(UTC).date()
    await world.wait_requests(1, f"{uid}-a", today.isoformat())
    await world.wait_requests(1, f"{uid}-b", today.isoformat())
    rep = await world.report(
        f"{uid}-a", from_date=(today - timedelta(days=2)).isoformat(), to_date=today.isoformat()
    )
    assert [r.key for r in rep.rows] == [(today - timedelta(days=d)).isoformat() for d in (2, 1, 0)]
    assert rep.total.tokens == 150
    both = await world.report(None, from_date=today.isoformat(), to_date=today.isoformat())
    assert both.tenant_id is None
    assert both.total.tokens == 150 + 51


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [("2026-02-01", "2026-01-01", "is before"), ("2020-01-01", "2026-01-01", "too long")],
)
async def test_bad_ranges_are_refused(start_cost, since: str, until: str, message: str) -> None:
    world = await start_cost()
    with pytest.raises(RemoteError, match=message) as err:
        await world.report("default", from_date=since, to_date=until)
    assert err.value.code == "invalid"


async def test_an_unsettled_reservation_expires(redis_link: RedisLink, uid: str) -> None:
    ledger = Ledger(redis_link, prefix=f"test:{uid}:")
    limit = [Limit(counter=f"d1:user:{uid}", unit="usd", soft=0, hard=1000)]
    now = 1_000_000
    first = await ledger.reserve("r1", limit, main=(600, 10), cheap=None, now_ms=now, ttl_ms=5000)
    blocked = await ledger.reserve(
        "r2", limit, main=(600, 10), cheap=None, now_ms=now + 4000, ttl_ms=5000
    )
    later = await ledger.reserve(
        "r3", limit, main=(600, 10), cheap=None, now_ms=now + 5001, ttl_ms=5000
    )
    assert (first.decision, blocked.decision, later.decision) == ("allow", "deny", "allow")
    assert blocked.used == 600


async def test_settling_replaces_the_estimate_with_the_actual_cost(
    redis_link: RedisLink, make_event, uid: str
) -> None:
    ledger = Ledger(redis_link, prefix=f"test:{uid}:")
    counter = f"d1:user:{uid}"
    limit = [Limit(counter=counter, unit="usd", soft=0, hard=1000)]
    now = int(time.time() * 1000)
    first = await ledger.reserve("r1", limit, main=(600, 10), cheap=None, now_ms=now, ttl_ms=60_000)
    assert first.decision == "allow"
    ev = make_event(1, reservation_id="r1")
    assert await ledger.record(ev, nusd=100, counters=[counter], seen_ttl_s=60)
    assert not await ledger.record(ev, nusd=100, counters=[counter], seen_ttl_s=60)  # once
    second = await ledger.reserve(
        "r2", limit, main=(800, 10), cheap=None, now_ms=now, ttl_ms=60_000
    )
    assert second.decision == "allow"  # 100 actual + 800: the 600 estimate was released
    third = await ledger.reserve("r3", limit, main=(200, 10), cheap=None, now_ms=now, ttl_ms=60_000)
    assert (third.decision, third.used) == ("deny", 900)
    assert await ledger.spent(counter) == (100, 150)


async def test_cheap_model_still_fits_when_the_main_one_would_break_the_hard_limit(
    redis_link: RedisLink, uid: str
) -> None:
    ledger = Ledger(redis_link, prefix=f"test:{uid}:")
    limit = [Limit(counter=f"d1:agent:{uid}", unit="usd", soft=0, hard=1000)]
    now = int(time.time() * 1000)
    got = await ledger.reserve("r1", limit, main=(1500, 10), cheap=(300, 10), now_ms=now, ttl_ms=9)
    assert (got.decision, got.limit_index) == ("downgrade", 1)
    none = await ledger.reserve("r2", limit, main=(1500, 10), cheap=(800, 10), now_ms=now, ttl_ms=9)
    assert (none.decision, none.used) == ("deny", 300)
