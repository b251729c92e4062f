"""Gateway routes of user profiles (kept by the memory service).

``GET /api/users/{id}/profile``     the user's current facts and the replaced ones
``PATCH /api/users/{id}/profile``   merge a JSON object of facts: a string sets, ``null`` removes

Profiles are per tenant (``caller.tenant_of(request)``): a tenant never reads or edits another
tenant's users. ``DELETE /api/users/{id}`` (memory routes) deletes the profile with the user.
Bad input is a 400/413/422 in the gateway's error shape; the memory service down is a 503.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from chatbus.contracts.memory import (
    MAX_FACT_CHARS,
    MAX_PROFILE_FACTS,
    PROFILE_KEY,
    UserProfile,
)
from chatbus.memory_client import BusMemory
from chatbus_gateway.api.body import read_json, validate
from chatbus_gateway.api.bus_errors import memory_guard
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.route_table import (
    BODY_ERRORS,
    STORE_ERRORS,
    STORE_TEXT,
    Answer,
    Route,
    add_routes,
)
from chatbus_gateway.api.store_schemas import ProfileOut, ProfilePatch
from chatbus_gateway.auth.caller import tenant_of

MAX_PROFILE_BODY = 32 * 1024
MAX_USER_ID = 200


def profile_json(p: UserProfile) -> dict[str, Any]:
    return {
        "user_id": p.user_id,
        "profile": p.values(),
        "facts": {k: f.model_dump(exclude_none=True) for k, f in p.facts.items()},
        "history": [c.model_dump(exclude_none=True) for c in p.history],
        "updated_at": p.updated_at or None,
    }


def _user(request: web.Request) -> str:
    user_id = request.match_info["id"]
    if not 0 < len(user_id) <= MAX_USER_ID:
        raise ApiError(422, f"user id must be 1-{MAX_USER_ID} characters", param="id")
    return user_id


def _facts(raw: Any) -> dict[str, str | None]:
    """The PATCH body checked field by field, so the 422 names the bad fact."""
    if not isinstance(raw, dict):
        raise ApiError(422, "the body must be a JSON object of facts", param="body")
    if not raw:
        raise ApiError(422, "no facts given", param="body")
    if len(raw) > MAX_PROFILE_FACTS:
        raise ApiError(422, f"at most {MAX_PROFILE_FACTS} facts per request", param="body")
    out: dict[str, str | None] = {}
    for key, value in raw.items():
        if not re.fullmatch(PROFILE_KEY, key):
            raise ApiError(422, f"fact name must match {PROFILE_KEY}", param=key[:60])
        if value is not None and not isinstance(value, str):
            raise ApiError(422, "a fact is a string, or null to remove it", param=key)
        if isinstance(value, str) and (not value.strip() or len(value) > MAX_FACT_CHARS):
            raise ApiError(422, f"a fact is 1-{MAX_FACT_CHARS} characters", param=key)
        out[key] = value
    return validate(ProfilePatch, out).root  # what /openapi.json documents


def setup_profile_routes(app: web.Application, memory: BusMemory) -> None:
    """Add ``GET`` and ``PATCH /api/users/{id}/profile`` to ``app``."""

    @memory_guard
    async def get_profile(request: web.Request) -> web.StreamResponse:
        profile = await memory.get_profile(tenant_of(request), _user(request))
        return web.json_response(profile_json(profile))

    @memory_guard
    async def patch_profile(request: web.Request) -> web.StreamResponse:
        user_id = _user(request)
        facts = _facts(await read_json(request, MAX_PROFILE_BODY))
        profile = await memory.update_profile(tenant_of(request), user_id, facts)
        return web.json_response(profile_json(profile))

    profile = {200: Answer("Profile", ProfileOut)}
    add_routes(
        app,
        [
            Route(
                "GET",
                "/api/users/{id}/profile",
                get_profile,
                "A user's profile: current facts and the ones they replaced",
                profile,
                STORE_ERRORS,
                error_text=STORE_TEXT,
            ),
            Route(
                "PATCH",
                "/api/users/{id}/profile",
                patch_profile,
                "Merge facts into a user's profile (null removes a fact)",
                profile,
                (*STORE_ERRORS, *BODY_ERRORS),
                body=ProfilePatch,
                error_text=STORE_TEXT,
            ),
        ],
    )
