"""Who is calling, as the auth middleware found out: typed request keys and their readers."""

from __future__ import annotations

from aiohttp import web

TENANT_ID = web.RequestKey("chatbus_tenant_id", str)
IS_ADMIN = web.RequestKey("chatbus_is_admin", bool)
KEY_ID = web.RequestKey("chatbus_key_id", str)


def tenant_of(request: web.Request) -> str:
    """The caller's tenant (``default`` when auth is off)."""
    return request.get(TENANT_ID) or "default"


def is_admin(request: web.Request) -> bool:
    return bool(request.get(IS_ADMIN))


def key_id_of(request: web.Request) -> str | None:
    """The caller's API key id (None for the admin key and with auth off)."""
    return request.get(KEY_ID)
