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
    when the server we are connected to is one of a cluster of 3 or more nodes, else 1."""
    if bus.replicas:
        return bus.replicas
    info: dict[str, Any] = getattr(bus.nc, "_server_info", None) or {}
    nodes = len(info.get("connect_urls") or []) if info.get("cluster") else 1
    return 3 if nodes >= 3 else 1


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


async def ensure_kv(bus: Bus, bucket: str, *, ttl_s: float, history: int = 1) -> KeyValue:
    """KV bucket ``bucket`` (file storage, :func:`replicas` copies), created or updated."""
    n = replicas(bus)
    cfg = api.KeyValueConfig(
        bucket=bucket, history=history, ttl=ttl_s, storage=api.StorageType.FILE, replicas=n
    )

    async def make() -> KeyValue:
        try:
            return await bus.js.create_key_value(cfg)
        except nats.js.errors.BadRequestError as e:  # exists with another configuration
            if e.err_code == NO_PEERS:
                raise NotReady(str(e)) from e
            info = await bus.js.stream_info(f"KV_{bucket}")
            info.config.max_age = ttl_s
            info.config.num_replicas = n
            await bus.js.update_stream(info.config)
            return await bus.js.key_value(bucket)

    return await _retry_while_electing(make)


async def ensure_dlq(bus: Bus, max_age_s: float = 14 * 86400) -> None:
    await ensure_stream(bus, DLQ_STREAM, [f"{DLQ_PREFIX}>"], max_age=max_age_s)
