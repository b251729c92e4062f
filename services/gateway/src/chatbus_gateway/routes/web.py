"""``GET /``: the chat page and its dashboard, so a browser is all a person needs.

The chat lists the agents from ``/api/agents``, streams replies from ``/api/chat/{agent}``
(SSE), shows handoffs, shows and edits what memory keeps about the user
(``/api/users/{id}/profile``) and can forget the session or the user; the dashboard
(``/#dashboard``) draws ``/api/usage``, ``/api/budgets``, ``/api/stats``, ``/api/agents`` and
the dead letters as SVG.
No build step: static files shipped in the package, served from ``/static/`` by name.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from chatbus_gateway.api.route_table import Answer, Route, add_routes

WEB = resources.files("chatbus_gateway").joinpath("web")
TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
# The only files served: a name outside this set is a 404, never a path on disk.
STATIC = frozenset(
    {"app.css", "common.js", "charts.js", "chat.js", "profile.js", "dashboard.js", "favicon.svg"}
)
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Everything the page loads is its own; no inline script, no third party.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def _file(name: str) -> web.Response:
    suffix = name[name.rfind(".") :]
    return web.Response(
        body=WEB.joinpath(name).read_bytes(),
        content_type=TYPES[suffix],
        charset="utf-8" if suffix != ".svg" else None,
        headers=HEADERS,
    )


async def index(request: web.Request) -> web.Response:
    return _file("index.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound(text=f"no file {name[:80]!r}")
    return _file(name)


async def favicon(request: web.Request) -> web.Response:
    return _file("favicon.svg")


def setup_web_routes(app: web.Application) -> None:
    page = Answer("The chat page and dashboard", media=("text/html",))
    asset = Answer("A file of the page", media=tuple(sorted(set(TYPES.values()) - {"text/html"})))
    icon = Answer("The icon", media=("image/svg+xml",))
    add_routes(
        app,
        [
            Route("GET", "/", index, "The web page (chat and dashboard)", {200: page}, auth=False),
            Route(
                "GET",
                "/static/{name}",
                static,
                "A script, style sheet or image of the page",
                {200: asset},
                (404,),
                auth=False,
                error_text={404: "No such file"},
            ),
            Route("GET", "/favicon.svg", favicon, "The icon", {200: icon}, auth=False),
            Route("GET", "/favicon.ico", favicon, "The icon", {200: icon}, auth=False),
        ],
    )
