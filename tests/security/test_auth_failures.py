"""Failed authentication is rate-limited per client address.

Issue 10, defect 5: 60 bad keys from one IP all got 401 and did not even count toward the
per-IP limit.
"""

from __future__ import annotations

import aiohttp

from tests.gateway.gw_harness import StartGateway
from tests.security.conftest import Tenant


async def _get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, object]]:
    async with http.get(f"{url}/api/agents", headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


async def test_bad_keys_hit_a_stricter_limit_then_even_a_good_key_waits(
    start_gateway: StartGateway, http: aiohttp.ClientSession, tenants: tuple[Tenant, Tenant]
) -> None:
    gw = await start_gateway(auth="on", rate_ip_per_min=100, rate_auth_fail_ip_per_min=5)
    a, _ = tenants
    assert (await _get(http, gw.url, a.auth))[0] == 200
    statuses = []
    for i in range(8):
        wrong = {"Authorization": f"Bearer cbk_guess{i}_nope"} if i % 2 else {}
        status, headers, body = await _get(http, gw.url, wrong)
        statuses.append(status)
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 60
            error = body["error"]
            assert isinstance(error, dict) and error["type"] == "rate_limited"
    assert statuses == [401] * 5 + [429] * 3
    # Guessing gains nothing now: the right key from that address waits too.
    status, headers, _ = await _get(http, gw.url, a.auth)
    assert status == 429 and int(headers["Retry-After"]) >= 1


async def test_failures_count_toward_the_address_limit(
    start_gateway: StartGateway, http: aiohttp.ClientSession, tenants: tuple[Tenant, Tenant]
) -> None:
    gw = await start_gateway(auth="on", rate_ip_per_min=4, rate_auth_fail_ip_per_min=100)
    a, _ = tenants
    bad = {"Authorization": "Bearer cbk_000000000000_wrong"}
    assert [(await _get(http, gw.url, bad))[0] for _ in range(3)] == [401] * 3
    assert (await _get(http, gw.url, a.auth))[0] == 200  # the 4th request of the minute
    status, headers, _ = await _get(http, gw.url, bad)
    assert status == 429 and int(headers["Retry-After"]) >= 1
