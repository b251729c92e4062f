"""Who is calling: ``Authorization: Bearer <key>`` -> the caller (``chatbus_gateway.auth.caller``).

With ``CHATBUS_AUTH=off`` (local development) every caller is the ``default`` tenant and
admin. The admin key (``CHATBUS_ADMIN_KEY``) sees every tenant; it acts for the tenant named
in ``X-Tenant-Id`` (default ``default``).
"""

from __future__ import annotations

import hmac
import re

from aiohttp import web
from aiohttp.typedefs import Middleware

from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.middleware import Handler, is_api
from chatbus_gateway.auth.caller import IS_ADMIN, KEY_ID, TENANT_ID, is_admin
from chatbus_gateway.auth.keys import KeyStore
from chatbus_gateway.flow.limits_http import AuthFailures
from chatbus_gateway.settings import GatewaySettings

TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chatbus"'}


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def auth_middleware(
    settings: GatewaySettings, keys: KeyStore, failures: AuthFailures
) -> Middleware:
    admin = settings.admin_key.get_secret_value() if settings.admin_key else ""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_api(request.path):
            return await handler(request)
        if not settings.auth_on:
            request[TENANT_ID], request[IS_ADMIN] = "default", True
            return await handler(request)
        failures.refuse_if_blocked(request)
        token = bearer(request)
        if token is None:
            raise await failures.failed(
                request,
                ApiError(
                    401,
                    "missing API key: send 'Authorization: Bearer <key>'",
                    type="authentication_error",
                    headers=CHALLENGE,
                ),
            )
        if admin and hmac.compare_digest(token.encode(), admin.encode()):
            tenant = request.headers.get("X-Tenant-Id", "default")
            if not TENANT.match(tenant):
                raise ApiError(422, "X-Tenant-Id: not a tenant id", param="X-Tenant-Id")
            request[TENANT_ID], request[IS_ADMIN] = tenant, True
            return await handler(request)
        record = await keys.lookup(token)
        if record is None:
            raise await failures.failed(
                request,
                ApiError(
                    401,
                    "invalid or revoked API key",
                    type="authentication_error",
                    headers=CHALLENGE,
                ),
            )
        request[TENANT_ID], request[IS_ADMIN] = record.tenant, False
        request[KEY_ID] = record.key_id
        return await handler(request)

    return middleware


def require_admin(request: web.Request) -> None:
    if not is_admin(request):
        raise ApiError(403, "this endpoint needs the admin key", type="permission_error")
