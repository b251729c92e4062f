"""``GET /``: a small chat page, so a browser is all a person needs to talk to the agents.

It lists the agents from ``/api/agents``, streams replies from ``/api/chat/{agent}`` (SSE),
shows handoffs, and can forget the session. No build step: one static HTML file.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

PAGE = resources.files("chatbus_gateway").joinpath("web/index.html")


async def index(request: web.Request) -> web.Response:
    return web.Response(
        body=PAGE.read_bytes(),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def setup_web_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
