"""Usage reports for people: the forecast, ``chatbus usage`` and ``GET /api/usage``."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from chatbus.bus import Bus
from chatbus.cost_client import BusCosts
from chatbus.metrics import Metrics
from chatbus_dev.usage_cli import forecast_month_end, main, print_usage
from chatbus_gateway.api.middleware import error_middleware
from chatbus_gateway.auth.caller import IS_ADMIN, TENANT_ID
from chatbus_gateway.routes.usage import setup_usage_routes

TODAY = datetime.now(UTC).date()
# The gateway's auth middleware stores tenant_id/is_admin under string keys (the agreed shape).
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


def test_forecast_on_a_known_series() -> None:
    # November has 30 days; $1/day for 10 days -> $30 by month end
    flat = {f"2026-11-{d:02d}": 1.0 for d in range(1, 11)}
    assert forecast_month_end(flat, date(2026, 11, 10)) == pytest.approx(30.0)
    # leap February: $1+2+3+4 in 4 days = $2.50/day x 29 days; other months and later days ignored
    series = {
        "2028-01-31": 100.0,
        "2028-02-01": 1.0,
        "2028-02-02": 2.0,
        "2028-02-03": 3.0,
        "2028-02-04": 4.0,
        "2028-02-05": 50.0,
    }
    assert forecast_month_end(series, date(2028, 2, 4)) == pytest.approx(72.5)
    # a missing day counts as zero
    assert forecast_month_end({"2026-11-01": 3.0}, date(2026, 11, 3)) == pytest.approx(30.0)


async def test_cli_prints_daily_table_totals_and_forecast(start_cost, make_event, uid: str) -> None:
    world = await start_cost()
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    await world.publish(make_event(1, tenant_id=uid, prompt_tokens=1000, completion_tokens=500))
    await world.publish(
        make_event(
            2, tenant_id=uid, prompt_tokens=2000, completion_tokens=0, ts=yesterday.timestamp()
        )
    )
    await world.wait_requests(1, uid, TODAY.isoformat())
    await world.wait_requests(1, uid, yesterday.date().isoformat())
    out = io.StringIO()
    await print_usage(world.settings.nats_url, 2, tenant_id=uid, today=TODAY, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["date", "tokens", "cost", "(USD)", "requests", "cache", "hits"]
    assert lines[1].split()[:3] == [yesterday.date().isoformat(), "2,000", "0.0003"]
    assert lines[2].split()[:3] == [TODAY.isoformat(), "1,500", "0.0004"]
    assert lines[4].split()[:4] == ["total", "3,500", "0.0008", "2"]
    assert lines[5].startswith(f"forecast for {TODAY:%B %Y}: $")


def test_cli_says_so_when_the_cost_service_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--nats-url", "nats://127.0.0.1:1", "--days", "3"]) == 1
    assert "cannot get usage from the cost service" in capsys.readouterr().err


Caller = Callable[..., web.Request]


@pytest_asyncio.fixture
async def gateway(start_cost) -> AsyncIterator[tuple[TestClient, object]]:
    """The usage routes behind the gateway's error middleware and a fake auth (X-Tenant)."""
    world = await start_cost()

    @web.middleware
    async def auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
        request[TENANT_ID] = request.headers.get("X-Tenant", "default")
        request[IS_ADMIN] = request.headers.get("X-Admin") == "yes"
        return await handler(request)

    errors = error_middleware(Metrics(CollectorRegistry(), "gateway"))
    app = web.Application(middlewares=[errors, auth])
    setup_usage_routes(app, BusCosts(world.bus))
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, world
    await client.close()


async def test_api_usage_groups_by_agent_for_the_callers_tenant(
    gateway, make_event, uid: str
) -> None:
    client, world = gateway
    await world.publish(make_event(1, tenant_id=uid, agent="support"))
    await world.publish(
        make_event(2, tenant_id=uid, agent="sales", prompt_tokens=10, completion_tokens=0)
    )
    await world.publish(make_event(3, tenant_id=f"{uid}-other", agent="sales"))
    await world.wait_requests(2, uid, TODAY.isoformat())
    await world.wait_requests(1, f"{uid}-other", TODAY.isoformat())
    day = TODAY.isoformat()
    r = await client.get(
        f"/api/usage?from={day}&to={day}&group_by=agent", headers={"X-Tenant": uid}
    )
    assert r.status == 200
    body = await r.json()
    assert body["tenant"] == uid
    assert {row["key"]: row["tokens"] for row in body["rows"]} == {"sales": 10, "support": 150}
    assert body["total"]["tokens"] == 160
    assert body["total"]["cost_usd"] == pytest.approx((100 * 0.15 + 50 * 0.6 + 10 * 0.15) / 1e6)


async def test_api_usage_day_report_has_forecast(gateway, make_event, uid: str) -> None:
    client, world = gateway
    await world.publish(make_event(1, tenant_id=uid))
    await world.wait_requests(1, uid, TODAY.isoformat())
    first = TODAY.replace(day=1).isoformat()
    r = await client.get(f"/api/usage?from={first}&to={TODAY}", headers={"X-Tenant": uid})
    body = await r.json()
    assert r.status == 200
    assert body["rows"][-1]["key"] == TODAY.isoformat()
    assert body["forecast_month_usd"] == pytest.approx(
        forecast_month_end({TODAY.isoformat(): body["total"]["cost_usd"]}, TODAY), abs=1e-6
    )


async def test_only_admins_read_other_tenants(gateway, make_event, uid: str) -> None:
    client, world = gateway
    await world.publish(make_event(1, tenant_id=uid))
    await world.wait_requests(1, uid, TODAY.isoformat())
    q = f"/api/usage?from={TODAY}&to={TODAY}&tenant={uid}"
    denied = await client.get(q, headers={"X-Tenant": "intruder"})
    assert denied.status == 403
    assert "admin" in (await denied.json())["error"]["message"]
    admin = await client.get(q, headers={"X-Tenant": "ops", "X-Admin": "yes"})
    assert (await admin.json())["total"]["requests"] == 1
    everyone = await client.get(
        f"/api/usage?from={TODAY}&to={TODAY}&tenant=*", headers={"X-Admin": "yes"}
    )
    assert (await everyone.json())["tenant"] == "*"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=yesterday", "from: a date YYYY-MM-DD"),
        ("group_by=planet", "group_by: one of day, agent"),
        ("to=2026-13-01", "to: a date YYYY-MM-DD"),
    ],
)
async def test_bad_parameters_are_a_422_with_a_reason(
    no_cost_service: TestClient, query: str, message: str
) -> None:
    r = await no_cost_service.get(f"/api/usage?{query}")
    assert r.status == 422
    assert message in (await r.json())["error"]["message"]


async def test_a_range_ending_before_it_starts_is_an_empty_report(
    no_cost_service: TestClient,
) -> None:
    r = await no_cost_service.get("/api/usage?from=2026-02-01&to=2026-01-01&group_by=agent")
    assert r.status == 200  # nothing was used in an empty range; the cost service is not asked
    body = await r.json()
    assert (body["from"], body["to"], body["rows"]) == ("2026-02-01", "2026-01-01", [])
    assert body["total"]["cost_usd"] == 0


async def test_a_range_over_400_days_is_cut_to_its_last_400(gateway, uid: str) -> None:
    client, _ = gateway
    r = await client.get(
        "/api/usage?from=2020-01-01&to=2026-01-01&group_by=agent", headers={"X-Tenant": uid}
    )
    assert r.status == 200
    body = await r.json()
    assert (body["from"], body["to"]) == (
        (date(2026, 1, 1) - timedelta(days=399)).isoformat(),
        "2026-01-01",
    )


@pytest_asyncio.fixture
async def no_cost_service(own_nats: str) -> AsyncIterator[TestClient]:
    """The usage routes with nobody answering on the cost subjects."""
    bus = await Bus.connect(own_nats, service="t")
    app = web.Application(middlewares=[error_middleware(Metrics(CollectorRegistry(), "gateway"))])
    setup_usage_routes(app, BusCosts(bus))
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()
    await bus.drain(timeout=2)


async def test_cost_service_down_is_a_503(no_cost_service: TestClient) -> None:
    r = await no_cost_service.get("/api/usage")
    assert r.status == 503
    assert (await r.json())["error"]["message"] == "the cost service is unavailable"
