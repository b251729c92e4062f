"""``GET /api/usage``: tokens and cost between two dates, grouped by one dimension.

Query: ``from`` and ``to`` (``YYYY-MM-DD``, inclusive, UTC; default: the last 7 days),
``group_by`` (``day|agent|model|user|session``, default ``day``). A caller sees its own tenant;
an admin may pass ``tenant=<id>`` or ``tenant=*`` for every tenant. A ``group_by=day`` answer
whose range starts on or before the first of ``to``'s month also carries
``forecast_month_usd`` (see ``chatbus.contracts.cost.forecast_month_end``). Errors: 422 for bad
parameters, 403 for another tenant without admin rights, 503 when the cost service is down
(all in the gateway's ``{"error": {message, type, code, param}}`` shape). A report covers at
most 400 days: a longer range is cut to its last 400 days (``from`` alone: its first 400, up to
today); ``to`` before ``from`` is an empty report. The answer's ``from`` and ``to`` say which.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from aiohttp import web

from chatbus.contracts.cost import GROUP_BY, GroupBy, UsageRow, forecast_month_end
from chatbus.cost_client import BusCosts
from chatbus.errors import BusError, RemoteError
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.params import query_date, query_tenant
from chatbus_gateway.api.route_table import (
    DATE,
    STORE_ERRORS,
    STORE_TEXT,
    TENANT_OR_ALL,
    Answer,
    Route,
    add_routes,
    query,
)
from chatbus_gateway.api.store_schemas import UsageReportOut
from chatbus_gateway.auth.caller import is_admin, tenant_of

MAX_DAYS = 400


def _shift(day: date, days: int) -> date:
    """``day`` moved by ``days``, kept within the calendar (year 1 to 9999)."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def _empty(tenant: str | None, since: date, to: date, group_by: str) -> dict[str, Any]:
    return {
        "tenant": tenant if tenant is not None else "*",
        "from": since.isoformat(),
        "to": to.isoformat(),
        "group_by": group_by,
        "rows": [],
        "total": UsageRow(key="total").model_dump(),
    }


def setup_usage_routes(app: web.Application, costs: BusCosts) -> None:
    """Add ``GET /api/usage`` to ``app``; auth middleware sets ``tenant_id``/``is_admin``."""

    async def usage(request: web.Request) -> web.Response:
        to = query_date(request, "to", datetime.now(UTC).date())
        since = query_date(request, "from", _shift(to, -6))
        if "to" not in request.query:  # ?from= alone: up to today, at most MAX_DAYS
            to = max(since, min(to, _shift(since, MAX_DAYS - 1)))
        since = max(since, _shift(to, -(MAX_DAYS - 1)))  # at most the last MAX_DAYS of it
        group_by = request.query.get("group_by", "day")
        if group_by not in GROUP_BY:
            raise ApiError(422, f"group_by: one of {', '.join(GROUP_BY)}", param="group_by")
        tenant: str | None = tenant_of(request)
        asked = query_tenant(request)
        if asked is not None and asked != tenant:
            if not is_admin(request):
                raise ApiError(
                    403, "only an admin may read another tenant's usage", type="permission_error"
                )
            tenant = None if asked == "*" else asked
        if to < since:  # an empty range: nothing was used in it
            return web.json_response(_empty(tenant, since, to, group_by))
        try:
            report = await costs.report(
                tenant_id=tenant,
                from_date=since.isoformat(),
                to_date=to.isoformat(),
                group_by=cast(GroupBy, group_by),
            )
        except RemoteError as e:
            if e.code == "invalid":
                raise ApiError(422, e.message) from e
            raise ApiError(503, "the cost service is unavailable", type="unavailable") from e
        except BusError as e:
            raise ApiError(503, "the cost service is unavailable", type="unavailable") from e
        body: dict[str, Any] = {
            "tenant": report.tenant_id if report.tenant_id is not None else "*",
            "from": report.from_date,
            "to": report.to_date,
            "group_by": report.group_by,
            "rows": [r.model_dump() for r in report.rows],
            "total": report.total.model_dump(),
        }
        if group_by == "day" and since <= to.replace(day=1):
            body["forecast_month_usd"] = round(
                forecast_month_end({r.key: r.cost_usd for r in report.rows}, to), 6
            )
        return web.json_response(body)

    add_routes(
        app,
        [
            Route(
                "GET",
                "/api/usage",
                usage,
                "Tokens and cost, grouped",
                {200: Answer("Usage rows and totals", UsageReportOut)},
                (403, *STORE_ERRORS),
                params=(
                    query("from", DATE),
                    query("to", DATE),
                    query("group_by", {"type": "string", "enum": list(GROUP_BY)}),
                    query("tenant", TENANT_OR_ALL),
                ),
                error_text=STORE_TEXT,
            )
        ],
    )
