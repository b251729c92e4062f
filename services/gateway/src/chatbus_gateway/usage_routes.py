"""``GET /api/usage``: tokens and cost between two dates, grouped by one dimension.

Query: ``from`` and ``to`` (``YYYY-MM-DD``, inclusive, UTC; default: the last 7 days),
``group_by`` (``day|agent|model|user|session``, default ``day``). A caller sees its own tenant;
an admin may pass ``tenant=<id>`` or ``tenant=*`` for every tenant. A ``group_by=day`` answer
whose range starts on or before the first of ``to``'s month also carries
``forecast_month_usd`` (see ``chatbus.contracts.cost.forecast_month_end``). Errors: 422 for bad
parameters, 403 for another tenant without admin rights, 503 when the cost service is down.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from aiohttp import web

from chatbus.contracts.cost import GROUP_BY, GroupBy, forecast_month_end
from chatbus.cost_client import BusCosts
from chatbus.errors import BusError, RemoteError
from chatbus_gateway.caller import is_admin, tenant_of

MAX_DAYS = 400


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=422)


def _date(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"'{name}' must be a date YYYY-MM-DD, got {raw[:40]!r}") from None


def setup_usage_routes(app: web.Application, costs: BusCosts) -> None:
    """Add ``GET /api/usage`` to ``app``; auth middleware sets ``tenant_id``/``is_admin``."""

    async def usage(request: web.Request) -> web.Response:
        today = datetime.now(UTC).date()
        try:
            to = _date(request, "to", today)
            since = _date(request, "from", to - timedelta(days=6))
        except ValueError as e:
            return _bad(str(e))
        if to < since:
            return _bad(f"'to' ({to}) is before 'from' ({since})")
        if (to - since).days + 1 > MAX_DAYS:
            return _bad(f"at most {MAX_DAYS} days per report")
        group_by = request.query.get("group_by", "day")
        if group_by not in GROUP_BY:
            return _bad(f"'group_by' must be one of {', '.join(GROUP_BY)}")
        tenant: str | None = tenant_of(request)
        asked = request.query.get("tenant")
        if asked is not None and asked != tenant:
            if not is_admin(request):
                return web.json_response(
                    {"error": "only an admin may read another tenant's usage"}, status=403
                )
            tenant = None if asked == "*" else asked
        try:
            report = await costs.report(
                tenant_id=tenant,
                from_date=since.isoformat(),
                to_date=to.isoformat(),
                group_by=cast(GroupBy, group_by),
            )
        except RemoteError as e:
            status = 422 if e.code == "invalid" else 503
            return web.json_response({"error": e.message}, status=status)
        except BusError:
            return web.json_response({"error": "cost service unavailable"}, status=503)
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

    app.router.add_get("/api/usage", usage)
