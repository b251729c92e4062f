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


async def test_a_client_cannot_choose_its_address_behind_the_proxy(
    start_gateway: StartGateway, http: aiohttp.ClientSession, tenants: tuple[Tenant, Tenant]
) -> None:
    """Behind a proxy (``TRUST_FORWARDED_FOR``) the address is the one the proxy appended, the
    last in ``X-Forwarded-For``: the first is whatever the client sent, and taking it let each
    guess come from a new address and never meet a limit."""
    gw = await start_gateway(
        auth="on", trust_forwarded_for=True, rate_ip_per_min=100, rate_auth_fail_ip_per_min=3
    )
    statuses = []
    for i in range(6):  # what a proxy that appends the client's address forwards
        forwarded = {"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.9"}
        bad = {"Authorization": f"Bearer cbk_guess{i}_nope", **forwarded}
        statuses.append((await _get(http, gw.url, bad))[0])
    assert statuses == [401] * 3 + [429] * 3
    other = {"X-Forwarded-For": "198.51.100.1, 203.0.113.10", **tenants[0].auth}
    assert (await _get(http, gw.url, other))[0] == 200  # another client behind the proxy
