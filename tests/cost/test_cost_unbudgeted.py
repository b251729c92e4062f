"""Where no budget can apply, agents stop asking before each call — until the rules change."""

from __future__ import annotations

import asyncio
import time

from nats.aio.msg import Msg

from chatbus.contracts.chat import ChatRequest
from chatbus.contracts.cost import AuthorizeSpend
from chatbus.cost_client import BusCosts


def chat(uid: str, n: int, tenant: str = "default") -> ChatRequest:
    return ChatRequest(
        request_id=f"req-{uid}-{n}",
        agent="support",
        session_id=f"s-{uid}-{n}",
        message="hi",
        user_id=f"u-{uid}-{n}",
        tenant_id=tenant,
    )


async def count_asks(costs: BusCosts) -> list[Msg]:
    asks: list[Msg] = []

    async def seen(m: Msg) -> None:
        asks.append(m)

    await costs.bus.nc.subscribe(AuthorizeSpend.subject, cb=seen)
    await costs.bus.nc.flush()
    return asks


async def authorize_n(costs: BusCosts, uid: str, n: int, tenant: str = "default") -> set[str]:
    decisions = set()
    for i in range(n):
        auth = await costs.authorize(
            chat(uid, i, tenant), model="gpt-4o", cheap_model=None, prompt_tokens=10
        )
        decisions.add(auth.decision)
    await costs.bus.nc.flush()
    return decisions


async def test_calls_no_budget_covers_are_asked_once_then_allowed(start_cost, uid: str) -> None:
    world = await start_cost()
    asks = await count_asks(world.costs)
    assert await authorize_n(world.costs, uid, 5) == {"allow"}
    assert len(asks) == 1


async def test_a_budget_added_by_a_restart_is_enforced_on_the_next_call(
    start_cost, uid: str
) -> None:
    world = await start_cost()
    costs = world.costs
    await costs.watch_budgets()
    assert await authorize_n(costs, uid, 2) == {"allow"}
    await world.stop()
    tiny = {"scope": "tenant", "period": "daily", "unit": "usd", "hard": 0.000001}
    await start_cost(budgets=[tiny])
    # The new service announces its rules once it is up; the client drops what it was told.
    deadline = time.monotonic() + 5
    decision = "allow"
    while decision == "allow" and time.monotonic() < deadline:
        auth = await costs.authorize(
            chat(uid, 9), model="gpt-4o", cheap_model=None, prompt_tokens=10
        )
        decision = auth.decision
        await asyncio.sleep(0.01)  # allowed: bounded poll for another task's announcement
    assert decision == "deny"


async def test_every_call_is_asked_where_a_budget_may_apply(start_cost, uid: str) -> None:
    # A per-user rule: any user of the tenant may be limited, so nothing is skipped there;
    # another tenant's rule leaves this tenant unbudgeted.
    world = await start_cost(
        budgets=[
            {"scope": "user", "tenant": "acme", "period": "daily", "unit": "usd", "hard": 5},
        ]
    )
    asks = await count_asks(world.costs)
    assert await authorize_n(world.costs, uid, 3, tenant="acme") == {"allow"}
    assert len(asks) == 3
    assert await authorize_n(world.costs, uid, 3, tenant="other") == {"allow"}
    assert len(asks) == 4
