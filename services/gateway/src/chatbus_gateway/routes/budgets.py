"""``GET /api/budgets``: each budget's use in its current period, for the dashboard.

A tenant's key sees the budgets that limit it; the admin key (and auth off) sees every rule.
Errors: 503 when the cost service is down.
"""

from __future__ import annotations

from aiohttp import web

from chatbus.cost_client import BusCosts
from chatbus.errors import BusError
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.route_table import STORE_ERRORS, STORE_TEXT, Answer, Route, add_routes
from chatbus_gateway.api.store_schemas import BudgetsOut
from chatbus_gateway.auth.caller import is_admin, tenant_of


def setup_budget_routes(app: web.Application, costs: BusCosts) -> None:
    async def budgets(request: web.Request) -> web.Response:
        tenant = None if is_admin(request) else tenant_of(request)
        try:
            states = await costs.budgets(tenant_id=tenant)
        except BusError as e:
            raise ApiError(503, "the cost service is unavailable", type="unavailable") from e
        return web.json_response({"budgets": [s.model_dump() for s in states]})

    add_routes(
        app,
        [
            Route(
                "GET",
                "/api/budgets",
                budgets,
                "Each budget's use in its current period (the caller's tenant; the admin key "
                "sees every rule)",
                {200: Answer("Budget states", BudgetsOut)},
                STORE_ERRORS,
                error_text=STORE_TEXT,
            )
        ],
    )
