"""Job callbacks: where they may go (no server-side request forgery), and how they are sent.

By default a callback goes only to a public address: the host is resolved and every address
it resolves to must be public (not loopback, private, link-local, shared, multicast,
reserved or unspecified, IPv6 and IPv4-mapped/6to4/NAT64 forms included). The connection is
made only to an address that passed the check (the HTTP client's resolver filters, so a DNS
answer that changes between the check and the connection cannot redirect it), and redirects
are not followed. ``CALLBACK_ALLOW_HOSTS`` (comma-separated host names, IP addresses or
networks) lets a deployment reach hosts of its own. In production only ``https`` URLs are
taken. URLs are checked when the job is accepted (422) and again when the callback is sent.

The job record shows only ``delivered (<status>)``, ``failed (<status>)`` or ``failed`` (no
HTTP answer): nothing about what listens where.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from chatbus.contracts.jobs import JobCallback
from chatbus.errors import RemoteError
from chatbus_gateway.api.errors import ApiError
from chatbus_gateway.jobs.store import JobStore, public

log = logging.getLogger("chatbus.gateway.callbacks")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SHARED = ipaddress.ip_network("100.64.0.0/10")


class CallbackRefused(ValueError):
    """The callback URL is not one this gateway may call (``transient``: its host did not
    resolve, which may change)."""

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


def is_public(ip: IP) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast:
        return False
    if ip.is_reserved or ip.is_unspecified or ip in SHARED:
        return False
    return ip.is_global


class CallbackPolicy:
    def __init__(self, allow_hosts: str = "", *, https_only: bool = False) -> None:
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in (h.strip().lower().strip("[]") for h in allow_hosts.split(",")):
            if not item:
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.names.add(item.rstrip("."))
        self.https_only = https_only

    def allowed(self, ip: IP) -> bool:
        return is_public(ip) or any(ip in net for net in self.networks)

    def parse(self, url: str) -> tuple[str, int]:
        """The URL's host and port, when its form is acceptable."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise CallbackRefused("not a valid URL") from e
        schemes = ("https",) if self.https_only else ("http", "https")
        if parts.scheme not in schemes:
            raise CallbackRefused(f"the scheme must be {' or '.join(schemes)}")
        if not parts.hostname or parts.username is not None or parts.password is not None:
            raise CallbackRefused("a host is required (and no user info)")
        return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)

    def literal(self, host: str) -> IP | None:
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            return None

    async def check(self, url: str, *, timeout: float = 3.0) -> None:
        """Raise :class:`CallbackRefused` unless ``url`` may be called (resolving its host)."""
        host, port = self.parse(url)
        if host.rstrip(".") in self.names:
            return
        if (ip := self.literal(host)) is not None:
            if not self.allowed(ip):
                raise CallbackRefused("the address is not a public one")
            return
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                timeout,
            )
        except (OSError, TimeoutError) as e:
            raise CallbackRefused("the host does not resolve", transient=True) from e
        ips = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
        if not ips or not all(self.allowed(ip) for ip in ips):
            raise CallbackRefused("the host resolves to an address that is not a public one")

    async def check_or_422(self, url: str) -> None:
        try:
            await self.check(url)
        except CallbackRefused as e:
            raise ApiError(422, f"callback_url: {e}", param="callback_url") from e


class CheckedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then keeps only the addresses the policy allows: the
    callback connects to an address that was checked, never to a later DNS answer."""

    def __init__(self, policy: CallbackPolicy) -> None:
        self.policy = policy
        self.inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if host.lower().rstrip(".") in self.policy.names:
            return found
        kept = [r for r in found if self.policy.allowed(ipaddress.ip_address(r["host"]))]
        if not kept:
            raise OSError(f"no allowed address for {host!r}")
        return kept

    async def close(self) -> None:
        await self.inner.close()


def callback_session(policy: CallbackPolicy, timeout_s: float) -> aiohttp.ClientSession:
    """The HTTP client for callbacks: checked addresses only, no proxy, no cached DNS."""
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(policy), use_dns_cache=False)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), trust_env=False
    )


RETRY_STATUSES = frozenset({408, 425, 429})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class CallbackSender:
    """POSTs a finished job's record to its callback URL until the receiver takes it.

    2xx: delivered. Any other 4xx (but 408, 425, 429) or a redirect: the receiver refused it,
    no retry. No answer, 408/425/429 and 5xx: retried on the consumer's backoff, then parked
    on the dead-letter stream (listed and re-drivable by the admin API). A URL the policy
    refuses is not called at all. The outcome is kept on the job (``callback``).
    """

    def __init__(
        self,
        store: JobStore,
        http: aiohttp.ClientSession,
        secret: str | None,
        policy: CallbackPolicy,
    ) -> None:
        self.store = store
        self.http = http
        self.secret = secret
        self.policy = policy

    async def handle(self, cb: JobCallback) -> None:
        rec = await self.store.get(cb.job_id)
        if rec is None:
            log.warning("job %s expired before its callback was sent", cb.job_id)
            return
        try:  # again at delivery: DNS answers and the allow-list may have changed
            await self.policy.check(cb.url)
        except CallbackRefused as e:
            log.warning("job %s: callback refused by the policy: %s", cb.job_id, e)
            await self._note(cb.job_id, "failed")
            if e.transient:
                raise RemoteError("unavailable", f"callback of {cb.job_id}: {e}") from e
            return
        body = json.dumps(public(rec)).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "chatbus-gateway",
            "X-Chatbus-Job-Id": cb.job_id,
        }
        if self.secret:
            headers["X-Chatbus-Signature"] = signature(self.secret, int(time.time()), body)
        try:
            async with self.http.post(
                cb.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.info("job %s callback got no answer: %s", cb.job_id, type(e).__name__)
            await self._note(cb.job_id, "failed")
            raise RemoteError("unavailable", f"callback of {cb.job_id}: no answer") from e
        if 200 <= status < 300:
            log.info("job %s callback delivered (%d)", cb.job_id, status)
            await self._note(cb.job_id, f"delivered ({status})")
            return
        await self._note(cb.job_id, f"failed ({status})")
        if status >= 500 or status in RETRY_STATUSES:
            raise RemoteError("unavailable", f"callback of {cb.job_id} answered {status}")
        log.warning("job %s callback refused by the receiver (%d)", cb.job_id, status)

    async def _note(self, job_id: str, outcome: str) -> None:
        await self.store.set(job_id, callback=outcome)
