"""``chatbus up --cluster`` as a user runs it: the clustered topology starts and answers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.test_local_processes import UP, Runner, alive, base_port, children_of, wait_gone

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
def cluster_runner(tmp_path: Path) -> Iterator[Runner]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "OTEL_", "NATS_", "REDIS_"))
    }
    port = base_port()
    proc = subprocess.Popen(
        [*UP, "--cluster", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    runner = Runner(proc, port)
    yield runner
    kids = children_of(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    for pid in kids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_up_cluster_starts_the_topology_and_answers_through_either_gateway(
    cluster_runner: Runner,
) -> None:
    runner, port = cluster_runner, cluster_runner.port
    assert await asyncio.to_thread(runner.read_until, "Ready."), runner.why()
    banner = "\n".join(runner.seen)
    # What runs where: three NATS nodes, Redis master/replica/Sentinels, two of each agent
    # and two gateways, with the load balancer that would sit in front of the gateways.
    assert sum(f"nats      n{i} nats://" in banner for i in (1, 2, 3)) == 3
    assert "Sentinels" in banner and "replica redis://" in banner
    for name in ("agent-support", "agent-support-2", "agent-sales", "agent-sales-2", "memory"):
        assert f"  {name} " in banner, name
    assert f"gateway       http://127.0.0.1:{port} " in banner
    assert f"gateway-2     http://127.0.0.1:{port + 10} " in banner
    assert "load balancer" in banner
    kids = children_of(runner.proc.pid)
    assert sum("nats-server" in _cmd(p) for p in kids) == 3
    assert sum("sentinel" in _cmd(p) for p in kids) == 3

    # One conversation, its turns alternating between the two gateways: each sees the other's.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for i, gw in enumerate((port, port + 10, port, port + 10)):
            body = {"message": f"Hello number {i}", "session_id": "cluster-user"}
            async with http.post(f"http://127.0.0.1:{gw}/api/chat/support", json=body) as r:
                assert r.status == 200, await r.text()
                reply = (await r.json())["reply"]
            assert f"Hello number {i}" in reply
            # The offline model names how many earlier messages the agent sent it.
            assert f"{1 + 2 * i} context message" in reply, reply

    runner.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(runner.proc.wait, 90) == 0
    assert wait_gone(kids) == []


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
