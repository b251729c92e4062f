"""A NATS cluster with JetStream on this machine: N ``nats-server`` processes on loopback ports,
joined by cluster routes, each with durable JetStream (``sync_interval: always``).

For tests and ``chatbus up`` style local runs: ``start_nats_cluster(dir)`` returns once a
JetStream meta leader is elected, so 3-replica streams can be created at once. Nodes can be
killed (``kill -9``) and restarted on the same ports and store, as a chaos test needs.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from chatbus.servers import ServerProcess, free_port, nats_config, start_nats


@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    http_port: int
    store_dir: Path
    server: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.proc.poll() is None


@dataclass
class NatsCluster:
    nodes: list[NatsNode]
    routes: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (what ``NATS_URL`` accepts)."""
        return ",".join(n.url for n in self.nodes)

    def start_node(self, i: int, timeout: float = 15.0) -> None:
        node = self.nodes[i]
        text = nats_config(
            node.store_dir,
            name=node.name,
            cluster_port=node.cluster_port,
            routes=self.routes,
            http_port=node.http_port,
        )
        node.server = start_nats(node.store_dir, node.port, timeout=timeout, config_text=text)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (no clean shutdown)."""
        server = self.nodes[i].server
        if server is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()

    def restart(self, i: int) -> None:
        self.kill(i)
        self.start_node(i)

    def stop(self) -> None:
        for node in self.nodes:
            if node.server is not None:
                node.server.stop()

    def jsz(self, i: int) -> dict[str, object]:
        """Node ``i``'s JetStream monitoring page (``/jsz``)."""
        url = f"http://127.0.0.1:{self.nodes[i].http_port}/jsz"
        with urllib.request.urlopen(url, timeout=2) as r:
            return dict(json.loads(r.read()))

    def wait_for_leader(self, timeout: float = 30.0) -> str:
        """The JetStream meta leader's name, once every running node agrees there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = set()
            for i, node in enumerate(self.nodes):
                if not node.running:
                    continue
                try:
                    meta = self.jsz(i).get("meta_cluster") or {}
                except OSError:
                    leaders.add("")
                    continue
                assert isinstance(meta, dict)
                leaders.add(str(meta.get("leader") or ""))
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            time.sleep(0.1)  # polling child processes for readiness
        raise TimeoutError("the NATS cluster elected no JetStream meta leader in time")


def start_nats_cluster(base_dir: Path, size: int = 3, *, timeout: float = 30.0) -> NatsCluster:
    """Start ``size`` nodes on free loopback ports; return once a meta leader is elected."""
    nodes = [
        NatsNode(
            name=f"n{i + 1}",
            port=free_port(),
            cluster_port=free_port(),
            http_port=free_port(),
            store_dir=base_dir / f"n{i + 1}",
        )
        for i in range(size)
    ]
    cluster = NatsCluster(nodes, [n.cluster_port for n in nodes])
    try:
        for i in range(size):
            cluster.start_node(i)
        cluster.wait_for_leader(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
