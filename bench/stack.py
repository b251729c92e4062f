"""The stack a bench drives: its own NATS, Redis, mock model and chatbus processes.

``Stack(full=True)`` is what ``./dev up`` runs (gateway, support agent, memory, cost);
``full=False`` is the core path (gateway and one agent, memory and cost off). The model —
chat and embeddings — is the offline model in its own process, outside the stack, like a
provider would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chatbus_dev.nats_server import start_nats
from chatbus_dev.servers import ServerProcess, free_port, start_redis, wait_http_ok

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime
    except (OSError, IndexError):
        return 0.0


def rss_mib(pid: int) -> tuple[float, float]:
    """(RSS, of which anonymous: heap, not file pages the kernel can drop) in MiB."""
    got = {"VmRSS": 0, "RssAnon": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name = line.split(":", 1)[0]
            if name in got:
                got[name] = int(line.split()[1])
    except OSError:
        pass
    return got["VmRSS"] / 1024, got["RssAnon"] / 1024


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return (sum(parts) - idle) / CLK, sum(parts) / CLK


class Stack:
    def __init__(
        self, tmp: Path, *, latency_ms: float, full: bool, embeddings: str, embedding_dims: int
    ) -> None:
        self.tmp = tmp
        self.servers: list[ServerProcess] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}
        self.latency_ms = latency_ms
        self.full = full
        self.embeddings = embeddings
        self.embedding_dims = embedding_dims
        self.nats_url = ""
        self.memory_url = ""
        self.gateway = ""
        self.llm_url = ""

    def spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        p = subprocess.Popen(
            [sys.executable, *args], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(p)
        self.names[p.pid] = name
        return p

    async def wait(self, url: str) -> None:
        if not await wait_http_ok(url, timeout=60):
            raise SystemExit(f"{url} never became ready; logs in {self.tmp}")

    async def start(self) -> None:
        nats = start_nats(self.tmp / "nats")
        redis = start_redis()
        self.servers += [nats, redis]
        self.names[nats.proc.pid], self.names[redis.proc.pid] = "nats", "redis"
        self.nats_url = nats.url
        llm_port = free_port()
        self.spawn(
            [
                "-m",
                "chatbus_dev.offline_llm",
                str(llm_port),
                str(self.latency_ms),
                "--embedding-dims",
                str(self.embedding_dims),
            ],
            {},
            "mock-llm",
        )
        await self.wait(f"http://127.0.0.1:{llm_port}/health")
        self.llm_url = f"http://127.0.0.1:{llm_port}/v1"
        base = {
            "NATS_URL": nats.url,
            "REDIS_URL": redis.url,
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "DATA_DIR": str(self.tmp / "data"),
            "OPENAI_BASE_URL": self.llm_url,
            "OPENAI_API_KEY": "bench",
        }
        flags = (
            {}
            if self.full
            else {"MEMORY_ENABLED": "false", "COST_ENABLED": "false", "CACHE_ENABLED": "false"}
        )
        if self.full:
            for module, name in (("chatbus_cost", "cost"), ("chatbus_memory", "memory")):
                port = free_port()
                env = {**base, "PORT": str(port)}
                if name == "memory":
                    env["EMBEDDINGS"] = self.embeddings
                    self.memory_url = f"http://127.0.0.1:{port}"
                self.spawn(["-m", module], env, name)
                await self.wait(f"http://127.0.0.1:{port}/ready")
        agent_port, gw_port = free_port(), free_port()
        self.spawn(["-m", "agent_support"], {**base, **flags, "PORT": str(agent_port)}, "agent")
        await self.wait(f"http://127.0.0.1:{agent_port}/ready")
        self.spawn(
            ["-m", "chatbus_gateway"],
            {
                **base,
                "PORT": str(gw_port),
                "CHATBUS_AUTH": "off",
                "RATE_IP_PER_MIN": "0",
                "RATE_KEY_PER_MIN": "0",
                "RATE_USER_PER_MIN": "0",
                "RATE_SESSION_PER_MIN": "0",
                "TOKENS_KEY_PER_MIN": "0",
                # every simulated user shares one address here, as behind a proxy
                "HTTP_MAX_CONNECTIONS_PER_IP": "0",
            },
            "gateway",
        )
        await self.wait(f"http://127.0.0.1:{gw_port}/ready")
        self.gateway = f"http://127.0.0.1:{gw_port}"

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs] + [s.proc.pid for s in self.servers]

    def pid_of(self, name: str) -> int | None:
        return next((p for p, n in self.names.items() if n == name), None)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in self.servers:
            s.stop()
