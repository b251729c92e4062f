"""``cost.budgets.v1``: where each budget stands, as the dashboard shows it, tenant by tenant."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.cost.conftest import CostWorld, MakeEvent, StartCost

RULES = [
    {"scope": "global", "period": "monthly", "unit": "usd", "soft": 0.00005, "hard": 10},
    {"scope": "tenant", "period": "daily", "unit": "tokens", "soft": 200, "hard": 400},
    {"scope": "tenant", "id": "acme", "period": "daily", "unit": "tokens", "hard": 1000},
    {"scope": "user", "period": "daily", "unit": "usd", "hard": 1},
]


async def states(world: CostWorld, tenant: str | None) -> dict[str, tuple[float | None, str]]:
    got = await world.costs.budgets(tenant_id=tenant)
    return {b.label: (b.used, b.state) for b in got}


async def test_budgets_report_use_and_level_for_who_asks(
    start_cost: StartCost, make_event: MakeEvent
) -> None:
    world = await start_cost(budgets=RULES)
    for n in range(2):  # 2 x 150 tokens for the default tenant: past its soft 200
        await world.publish(make_event(n))
    await world.publish(make_event(9, tenant_id="acme", prompt_tokens=10, completion_tokens=5))
    await world.wait_requests(2, "default", _today())
    await world.wait_requests(1, "acme", _today())

    admin = await states(world, None)
    used_usd, level = admin["monthly usd budget for global"]
    assert (
        used_usd is not None and used_usd > 0 and level == "soft"
    )  # 450 gpt-4o-mini tokens: past soft
    assert admin["daily tokens budget for tenant (each)"] == (300.0, "soft")
    assert admin["daily tokens budget for tenant acme"][0] == 15.0
    assert admin["daily usd budget for user (each)"] == (None, "per_subject")

    # a tenant sees the rules that limit it, with its own figures, and nothing of others
    default = await states(world, "default")
    assert default == {
        "daily tokens budget for tenant (each)": (300.0, "soft"),
        "daily usd budget for user (each)": (None, "per_subject"),
    }
    acme = await states(world, "acme")
    assert acme["daily tokens budget for tenant (each)"] == (15.0, "ok")
    assert acme["daily tokens budget for tenant acme"] == (15.0, "ok")
    assert "monthly usd budget for global" not in acme


def _today() -> str:
    return datetime.now(UTC).date().isoformat()
