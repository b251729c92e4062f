"""The clustered topology on one machine: what ``chatbus up --cluster`` and the chaos test run.

- NATS: a 3-node cluster with JetStream (:func:`chatbus_dev.nats_server.start_nats_cluster`);
  services get every node's URL in ``NATS_URL`` and streams/KV buckets are created with 3
  replicas, so one node can die without losing an acknowledged message.
- Redis: a master, a replica and 3 Sentinels (:func:`chatbus_dev.servers.start_redis_sentinel`);
  services get ``redis+sentinel://`` and follow a failover (:class:`chatbus.redis_link.RedisLink`).
- Gateway x2 and each agent x2: stateless, in NATS queue groups. The two gateways listen on two
  ports; in production a load balancer (or DNS) sits in front of them as one address.
- Memory x1 and cost x1 (see the README's "Scaling out" for why memory is one instance here).

Each extra instance listens ``SECOND_OFFSET`` ports above the first (gateway 8080 and 8090).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chatbus_dev.local import LocalService, services
from chatbus_dev.nats_server import NatsCluster, start_nats_cluster
from chatbus_dev.servers import SentinelSet, ServerProcess, start_redis_sentinel

SECOND_OFFSET = 10
# How many instances of each service the cluster runs (agents: every agent-* service).
INSTANCES = {"gateway": 2, "memory": 1, "cost": 1}
AGENT_INSTANCES = 2


def instances_of(name: str) -> int:
    return INSTANCES.get(name, AGENT_INSTANCES if name.startswith("agent-") else 1)


def cluster_services(root: Path, base_port: int) -> list[LocalService]:
    """Every service of :func:`chatbus_dev.local.services`, repeated as the cluster runs it.

    The second instance of ``gateway`` is ``gateway-2`` on ``port + SECOND_OFFSET``.
    """
    out: list[LocalService] = []
    for svc in services(root, base_port):
        out.append(svc)
        for i in range(2, instances_of(svc.name) + 1):
            port = svc.port + (i - 1) * SECOND_OFFSET
            out.append(LocalService(f"{svc.name}-{i}", svc.module, port))
    return out


@dataclass
class ClusterInfra:
    """The 3-node NATS cluster and the Sentinel-managed Redis, and the URLs services use."""

    nats: NatsCluster
    redis: SentinelSet

    @property
    def nats_url(self) -> str:
        return self.nats.url

    @property
    def redis_url(self) -> str:
        return self.redis.url + "/0"

    def servers(self) -> list[ServerProcess]:
        """Every server process (stopped in reverse order)."""
        nodes = [n.server for n in self.nats.nodes if n.server is not None]
        return [*nodes, self.redis.master, *self.redis.replicas, *self.redis.sentinels]

    def describe(self) -> list[str]:
        """What runs where, one line each (the runner's banner)."""
        r = self.redis
        return [
            *(f"  nats      {n.name} {n.url} (JetStream, 3 replicas)" for n in self.nats.nodes),
            f"  redis     master {r.master.url}, replica "
            + ", ".join(x.url for x in r.replicas)
            + f"; Sentinels {r.url.split('://', 1)[1].split('/')[0]} (master name {r.name})",
        ]

    def stop(self) -> None:
        self.redis.stop()
        self.nats.stop()


def start_cluster_infra(directory: Path, *, tied: bool = False) -> ClusterInfra:
    nats = start_nats_cluster(directory / "nats", tied=tied)
    try:
        redis = start_redis_sentinel(directory / "redis", tied=tied)
    except BaseException:
        nats.stop()
        raise
    return ClusterInfra(nats, redis)


@contextmanager
def cluster_infra(directory: Path) -> Iterator[ClusterInfra]:
    infra = start_cluster_infra(directory)
    try:
        yield infra
    finally:
        infra.stop()
