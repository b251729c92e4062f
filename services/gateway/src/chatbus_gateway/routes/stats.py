"""``GET /api/stats``: this gateway's chat traffic in the last hour (counted by the traffic
middleware of the request flow)."""

from __future__ import annotations

from aiohttp import web

from chatbus_gateway.api.route_table import TENANT_OR_ALL, Answer, Route, add_routes, query
from chatbus_gateway.api.store_schemas import StatsOut
from chatbus_gateway.flow.traffic import stats


def setup_stats_routes(app: web.Application) -> None:
    add_routes(
        app,
        [
            Route(
                "GET",
                "/api/stats",
                stats,
                "This gateway's chat traffic in the last hour, per minute and per agent "
                "(requests, errors, refusals, p50/p95 ms); a tenant sees its own",
                {200: Answer("Traffic", StatsOut)},
                (404, 422),
                params=(query("tenant", TENANT_OR_ALL),),
            )
        ],
    )
