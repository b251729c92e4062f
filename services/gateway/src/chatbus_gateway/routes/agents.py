"""``GET /api/agents``: the agents running on the bus right now."""

from __future__ import annotations

from aiohttp import web

from chatbus_gateway.api.route_table import Answer, Route, add_routes
from chatbus_gateway.api.schemas import AgentsOut
from chatbus_gateway.deps import DEPS
from chatbus_gateway.peers.agents import discover


async def list_agents(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    return web.json_response({"agents": await discover(deps.bus, deps.settings.agents_window_s)})


def setup_agent_routes(app: web.Application) -> None:
    running = Answer("Agents", AgentsOut)
    summary = "Agents running on the bus right now"
    add_routes(app, [Route("GET", "/api/agents", list_agents, summary, {200: running})])
