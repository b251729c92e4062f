"""JetStream durability: the shipped NATS configurations fsync every write, and streams and KV
buckets get 3 replicas on a 3-node cluster (1 on a single server)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats.errors
import yaml

from chatbus.bus import Bus
from chatbus.jetstream import ensure_kv, ensure_stream, replicas
from chatbus_dev.nats_server import NatsCluster, start_nats

ROOT = Path(__file__).resolve().parents[2]


async def eventually(read: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> bytes:
    """``read().value``/``.data`` once the cluster answers again (a new leader is elected)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            got = await read()
            return bytes(getattr(got, "value", None) or got.data)
        except (nats.errors.Error, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)  # allowed: waiting for the cluster to elect a leader


def test_the_runner_starts_nats_with_fsync_on_every_write(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "nats")
    try:
        conf = (tmp_path / "nats.conf").read_text()
    finally:
        server.stop()
    assert re.search(r"jetstream\s*\{[^}]*sync_interval:\s*always", conf)
    assert str(tmp_path / "nats") in conf


def test_compose_runs_nats_with_the_durable_config() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    nats = compose["services"]["nats"]
    command = nats["command"]
    conf_path = command[command.index("-c") + 1]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in nats["volumes"] if ":" in v}
    source = ROOT / mounted[conf_path].removeprefix("./")
    conf = source.read_text()
    assert re.search(r"jetstream\s*\{[^}]*sync_interval:\s*always", conf)
    assert re.search(r"store_dir:\s*\"?/data", conf)


async def test_single_server_streams_have_one_replica(bus: Bus, uid: str) -> None:
    assert replicas(bus) == 1
    await ensure_stream(bus, f"R1_{uid}", [f"r1.{uid}"])
    info = await bus.js.stream_info(f"R1_{uid}")
    assert info.config.num_replicas == 1 and info.config.storage == "file"


async def test_streams_and_buckets_get_three_replicas_on_a_three_node_cluster(
    nats_cluster: NatsCluster, uid: str
) -> None:
    bus = await Bus.connect(nats_cluster.url, service="test")
    try:
        assert replicas(bus) == 3
        await ensure_stream(bus, f"R3_{uid}", [f"r3.{uid}"])
        kv = await ensure_kv(bus, f"r3_{uid}", ttl_s=60)
        stream = await bus.js.stream_info(f"R3_{uid}")
        bucket = await bus.js.stream_info(f"KV_r3_{uid}")
        for info in (stream, bucket):
            assert info.config.num_replicas == 3
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        # A client asking for fewer copies (one that sees part of a restarting cluster) never
        # takes a replica away from a stream that has them.
        await ensure_stream(bus, f"R3_{uid}", [f"r3.{uid}"], num_replicas=1, max_age=3600.0)
        kept = await bus.js.stream_info(f"R3_{uid}")
        assert kept.config.num_replicas == 3 and kept.config.max_age == 3600.0
        await bus.js.publish(f"r3.{uid}", b"kept")
        await kv.put("k", b"v")
        # The stream's leader dies (kill -9): the survivors elect another and serve every write.
        leader = stream.cluster.leader
        nats_cluster.kill(next(i for i, n in enumerate(nats_cluster.nodes) if n.name == leader))
        assert await eventually(lambda: kv.get("k")) == b"v"
        assert await eventually(lambda: bus.js.get_msg(f"R3_{uid}", 1)) == b"kept"
    finally:
        await bus.nc.close()
