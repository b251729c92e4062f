"""Where JetStream keeps things: streams and KV buckets, file-backed and replicated.

Every stream and bucket chatbus creates goes through here, so all of them get the same
durability: file storage and :func:`replicas` copies (3 when the server is one of a cluster
of 3 or more nodes, else 1; ``NATS_REPLICAS`` overrides). Fsync-before-ack is the server's
setting (``jetstream { sync_interval: always }``: infra/nats/nats.conf in compose,
:func:`chatbus_dev.nats_server.nats_config` for ./dev and the tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js import api
from nats.js.kv import KeyValue

from chatbus.bus import Bus

log = logging.getLogger("chatbus.jetstream")

T = TypeVar("T")

# "no suitable peers for placement": a forming cluster does not know all its nodes yet.
NO_PEERS = 10005


class NotReady(Exception):
    """The cluster cannot place this stream yet; retried."""


DLQ_STREAM = "DLQ"
DLQ_PREFIX = "dlq."


def replicas(bus: Bus) -> int:
    """Copies of each stream and bucket: ``bus.replicas`` when set (``NATS_REPLICAS``), else 3
    when the servers this client knows (its ``NATS_URL`` list and those the cluster announced)
    number 3 or more, else 1.

    Not from the current server's INFO alone: a node that has just restarted announces only
    part of its cluster, and would make a stream created or updated then a single copy.
    """
    if bus.replicas:
        return bus.replicas
    info: dict[str, Any] = getattr(bus.nc, "_server_info", None) or {}
    announced = len(info.get("connect_urls") or []) if info.get("cluster") else 1
    known = len(getattr(bus.nc, "servers", None) or [])
    return 3 if max(announced, known) >= 3 else 1


async def _kept_replicas(bus: Bus, stream: str, wanted: int) -> int:
    """``wanted``, or more when ``stream`` already has more copies: an update never drops a
    replica (only an explicit ``NATS_REPLICAS`` may)."""
    if bus.replicas:
        return wanted
    info = await bus.js.stream_info(stream)
    return max(wanted, info.config.num_replicas or 1)


async def _retry_while_electing(make: Callable[[], Awaitable[T]], wait_s: float = 15.0) -> T:
    """``make()``, retried while a fresh cluster has no JetStream meta leader yet."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            return await make()
        except (
            NotReady,
            nats.js.errors.ServiceUnavailableError,
            nats.errors.NoRespondersError,
            nats.errors.TimeoutError,
        ) as e:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.info("JetStream not ready (%s), retrying", e)
            await asyncio.sleep(0.2)  # allowed: waiting for a meta leader to be elected


async def ensure_stream(bus: Bus, name: str, subjects: list[str], **config: Any) -> None:
    """Create stream ``name`` or update it to this configuration (file storage and
    :func:`replicas` copies unless ``config`` says otherwise)."""
    config.setdefault("storage", api.StorageType.FILE)
    config.setdefault("num_replicas", replicas(bus))
    cfg = api.StreamConfig(name=name, subjects=subjects, **config)

    async def make() -> None:
        try:
            await bus.js.add_stream(cfg)
        except nats.js.errors.BadRequestError as e:
            if e.err_code == NO_PEERS:
                raise NotReady(str(e)) from e
            cfg.num_replicas = await _kept_replicas(bus, name, cfg.num_replicas or 1)
            await bus.js.update_stream(cfg)

    await _retry_while_electing(make)


async def ensure_consumer(bus: Bus, stream: str, config: api.ConsumerConfig) -> None:
    """Durable consumer ``config.durable_name`` on ``stream``, created if missing (kept as is
    when it exists: whoever consumes it may have tuned it)."""

    async def make() -> None:
        try:
            await bus.js.consumer_info(stream, config.durable_name or "")
        except nats.js.errors.NotFoundError:
            await bus.js.add_consumer(stream, config)

    await _retry_while_electing(make)


async def ensure_kv(
    bus: Bus, bucket: str, *, ttl_s: float, history: int = 1, timeout: float | None = None
) -> KeyValue:
    """KV bucket ``bucket`` (file storage, :func:`replicas` copies), created or updated.

    ``timeout``: how long each operation of the returned handle waits for JetStream (default
    the connection's 5 s); a caller that retries while a node dies wants short tries.
    """
    n = replicas(bus)
    cfg = api.KeyValueConfig(
        bucket=bucket, history=history, ttl=ttl_s, storage=api.StorageType.FILE, replicas=n
    )
    js = bus.js if timeout is None else bus.nc.jetstream(timeout=timeout)

    async def make() -> KeyValue:
        try:
            return await js.create_key_value(cfg)
        except nats.js.errors.BadRequestError as e:  # exists with another configuration
            if e.err_code == NO_PEERS:
                raise NotReady(str(e)) from e
            info = await js.stream_info(f"KV_{bucket}")
            info.config.max_age = ttl_s
            info.config.num_replicas = n if bus.replicas else max(n, info.config.num_replicas or 1)
            await js.update_stream(info.config)
            return await js.key_value(bucket)

    return await _retry_while_electing(make)


async def stream_exists(bus: Bus, name: str, timeout: float = 1.0) -> bool:
    """False only when JetStream says there is no stream ``name``; one electing a leader, or
    a JetStream that does not answer in ``timeout``, counts as there (a publish that met
    "no responders" is then tried again, not answered by creating the stream)."""
    try:
        await bus.nc.jetstream(timeout=timeout).stream_info(name)
    except nats.js.errors.NotFoundError:
        return False
    except Exception:
        return True
    return True


async def ensure_dlq(bus: Bus, max_age_s: float = 14 * 86400) -> None:
    await ensure_stream(bus, DLQ_STREAM, [f"{DLQ_PREFIX}>"], max_age=max_age_s)
