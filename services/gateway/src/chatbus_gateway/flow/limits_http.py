"""Rate limits on the HTTP side: who the caller is, the check, and the headers on answers."""

from __future__ import annotations

import math
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from chatbus.metrics import Metrics
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.api.middleware import Handler, is_api, route_name
from chatbus_gateway.auth.caller import key_id_of
from chatbus_gateway.flow.ratelimit import Decision, Limit, RateLimiter
from chatbus_gateway.settings import GatewaySettings

RATE = web.RequestKey("chatbus_gateway_rate", Decision)

# Routes that check limits themselves, once they know the user and the session.
SELF_LIMITED = {"/api/chat/{agent_id}", "/v1/chat/completions"}


def client_ip(request: web.Request, settings: GatewaySettings) -> str:
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            # The last address is the one our proxy appended; the ones before it are whatever
            # the client sent (a new one per request would dodge every per-address limit).
            return forwarded.rsplit(",", 1)[-1].strip()[:64]
    return request.remote or "unknown"


class HttpLimits:
    def __init__(self, limiter: RateLimiter, settings: GatewaySettings, metrics: Metrics) -> None:
        self.limiter = limiter
        self.settings = settings
        self.metrics = metrics
        s = settings
        per_min = (s.rate_ip_per_min, s.rate_key_per_min, s.rate_user_per_min)
        # Every request limit off (a trusted network, a benchmark): nothing to count.
        self.off = not any((*per_min, s.rate_session_per_min, s.tokens_key_per_min))

    def caller_limits(self, request: web.Request) -> list[Limit]:
        s = self.settings
        out = [self.limiter.limit("ip", client_ip(request, s), s.rate_ip_per_min)]
        if key_id := key_id_of(request):
            out.append(self.limiter.limit("key", str(key_id), s.rate_key_per_min))
        return out

    def tokens_limit(self, request: web.Request) -> Limit | None:
        key_id = key_id_of(request)
        if not key_id:
            return None
        return self.limiter.limit("tokens", str(key_id), self.settings.tokens_key_per_min)

    async def check(
        self,
        request: web.Request,
        extra: list[Limit] | None = None,
        tokens: bool = False,
    ) -> None:
        """Count this request against the caller's limits (plus ``extra``) or refuse it."""
        if self.off:
            return
        decision = await self.limiter.admit(
            self.caller_limits(request) + (extra or []),
            self.tokens_limit(request) if tokens else None,
        )
        request[RATE] = decision
        if not decision.allowed:
            self.metrics.rate_limited.labels(decision.name).inc()
            raise ApiError(
                429,
                f"rate limit reached ({decision.name}: {decision.limit} per minute); "
                f"retry in {max(decision.reset_s, 1)} s",
                type="rate_limited",
            )

    def middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not is_api(request.path):
                return await handler(request)
            if route_name(request) not in SELF_LIMITED:
                await self.check(request)
                return await handler(request)
            try:
                return await handler(request)
            except ApiError:
                if RATE not in request:  # refused before its own check: still counted
                    await self.check(request)
                raise

        return middleware


class AuthFailures:
    """Failed authentications per client address.

    Each failure counts toward the address's request limit (``RATE_IP_PER_MIN``) and a stricter
    one of its own (``RATE_AUTH_FAIL_IP_PER_MIN``). Past either, the address is answered 429
    with ``Retry-After``; past the failure limit, for the rest of the window **whatever key it
    sends**, so guessing keys gains nothing. That block is kept in this process too (no Redis
    round trip for a blocked address); another replica blocks it at its first failure there.
    """

    MAX_BLOCKED = 10_000  # addresses remembered at most (expired ones are dropped first)

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.blocked: dict[str, float] = {}  # address -> when its block ends (monotonic)

    def refuse_if_blocked(self, request: web.Request) -> None:
        if not self.blocked:
            return
        ip = client_ip(request, self.limits.settings)
        until = self.blocked.get(ip)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self.blocked[ip]
            return
        raise self._refusal(math.ceil(left))

    async def failed(self, request: web.Request, error: ApiError) -> ApiError:
        """Count one failed authentication: the answer is ``error`` (401), or 429 past a limit."""
        s, limiter = self.limits.settings, self.limits.limiter
        ip = client_ip(request, s)
        counted = [
            limiter.limit("ip", ip, s.rate_ip_per_min),
            limiter.limit("authfail", ip, s.rate_auth_fail_ip_per_min),
        ]
        decision = await limiter.admit(counted)
        request[RATE] = decision
        if decision.allowed:
            return error
        self.limits.metrics.rate_limited.labels(decision.name).inc()
        retry = max(decision.reset_s, 1)
        if decision.name == "authfail":
            self._block(ip, retry)
            return self._refusal(retry)
        return ApiError(
            429,
            f"rate limit reached (ip: {decision.limit} per minute); retry in {retry} s",
            type="rate_limited",
        )

    def _block(self, ip: str, seconds: int) -> None:
        now = time.monotonic()
        if len(self.blocked) >= self.MAX_BLOCKED:
            self.blocked = {k: v for k, v in self.blocked.items() if v > now}
        if len(self.blocked) < self.MAX_BLOCKED:
            self.blocked[ip] = now + seconds

    def _refusal(self, retry: int) -> ApiError:
        limit = self.limits.settings.rate_auth_fail_ip_per_min
        return ApiError(
            429,
            f"too many failed authentications from your address ({limit} per minute); "
            f"retry in {retry} s",
            type="rate_limited",
            headers={"Retry-After": str(retry)},
        )


async def add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    decision = request.get(RATE)
    if decision is not None and decision.limit:
        response.headers.update(decision.headers())
