"""What the profile lookup costs per message: CPU of the agent, the memory service and NATS.

    ./dev run python bench/memory/profile_lookup.py                 # 1,000 users, 20,000 lookups
    ./dev run python bench/memory/profile_lookup.py --lookups 5000  # shorter

For every message that carries a ``user_id`` the agent asks memory for the user's profile
(``BusMemory.profile``: a ``memory.profile.get.v1`` request; memory reads the user's key in the
``MEMORY_PROFILES`` KV bucket, a second request to the NATS server, and answers). This starts
its own NATS, Redis, the offline model (memory probes its embeddings API at start) and the
real memory service as a process, fills 1,000 profiles of 3 facts, then makes the agent's call
from this process: one at a time (latency) and 64 in flight (CPU). CPU is read from /proc for
memory and NATS (their idle CPU over as long a time is subtracted) and from this process for
the agent's side (``time.process_time``, so other load on the machine does not count).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from stack import cpu_seconds

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest
from chatbus.deadline import after
from chatbus.memory_client import BusMemory
from chatbus_dev.nats_server import start_nats
from chatbus_dev.servers import free_port, start_redis, wait_http_ok

FACTS = {"name": "Ana", "city": "Lisbon", "plan": "enterprise"}


def request(user: str) -> ChatRequest:
    return ChatRequest(
        request_id=os.urandom(8).hex(),
        agent="support",
        session_id=f"s-{user}",
        message="Where is my order?",
        user_id=user,
        deadline=after(30),
    )


class Meter:
    """CPU seconds of this process and of the given pids, minus the pids' idle rate."""

    def __init__(self, pids: dict[str, int], idle: dict[str, float]) -> None:
        self.pids, self.idle = pids, idle

    def start(self) -> None:
        self.t0, self.me0 = time.perf_counter(), time.process_time()
        self.cpu0 = {n: cpu_seconds(p) for n, p in self.pids.items()}

    def stop(self, count: int) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        out = {"agent": (time.process_time() - self.me0) / count * 1e6}
        for n, p in self.pids.items():
            used = cpu_seconds(p) - self.cpu0[n] - self.idle[n] * wall
            out[n] = max(used, 0.0) / count * 1e6
        out["rate"] = count / wall
        return out


async def idle_rates(pids: dict[str, int], seconds: float) -> dict[str, float]:
    before = {n: cpu_seconds(p) for n, p in pids.items()}
    await asyncio.sleep(seconds)  # a measurement window, not a wait for a message
    return {n: (cpu_seconds(p) - before[n]) / seconds for n, p in pids.items()}


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    nats, redis = start_nats(tmp / "nats"), start_redis()
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (tmp / f"{name}.log").open("ab")
        p = subprocess.Popen(
            [sys.executable, *argv], env={**os.environ, **env}, stdout=log, stderr=log
        )
        procs.append(p)
        return p

    try:
        llm_port, mem_port = free_port(), free_port()
        spawn(["-m", "chatbus_dev.offline_llm", str(llm_port), "0"], {}, "mock-llm")
        if not await wait_http_ok(f"http://127.0.0.1:{llm_port}/health", timeout=60):
            raise SystemExit(f"the offline model did not start; logs in {tmp}")
        memory = spawn(
            ["-m", "chatbus_memory"],
            {
                "NATS_URL": nats.url,
                "REDIS_URL": redis.url,
                "HOST": "127.0.0.1",
                "PORT": str(mem_port),
                "LOG_LEVEL": "WARNING",
                "DATA_DIR": str(tmp / "data"),
                "EMBEDDINGS": "openai",
                "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
                "OPENAI_API_KEY": "bench",
            },
            "memory",
        )
        if not await wait_http_ok(f"http://127.0.0.1:{mem_port}/ready", timeout=120):
            raise SystemExit(f"memory did not start; logs in {tmp}")
        bus = await Bus.connect(nats.url, service="bench-agent")
        mem = BusMemory(bus)  # as the agent runtime makes it
        users = [f"user-{i}" for i in range(args.users)]
        for i in range(0, len(users), 50):
            batch = users[i : i + 50]
            await asyncio.gather(*(mem.update_profile("default", u, FACTS) for u in batch))
        assert await mem.profile(request(users[0])) == FACTS

        pids = {"memory": memory.pid, "nats": nats.proc.pid}
        meter = Meter(pids, await idle_rates(pids, 3.0))
        rng = random.Random(7)

        # one at a time: the latency a message waits (in parallel with recall)
        n1 = max(args.lookups // 10, 200)
        waits = []
        meter.start()
        for _ in range(n1):
            t = time.perf_counter()
            await mem.profile(request(rng.choice(users)))
            waits.append((time.perf_counter() - t) * 1000)
        one = meter.stop(n1)

        # 64 in flight, as under load: CPU per lookup
        todo = iter(range(args.lookups))

        async def worker() -> None:
            for _ in todo:
                await mem.profile(request(rng.choice(users)))

        meter.start()
        await asyncio.gather(*(worker() for _ in range(64)))
        many = meter.stop(args.lookups)

        # what a request costs the agent without any lookup (the baseline of the 'agent' column)
        meter.start()
        for _ in range(args.lookups):
            request(rng.choice(users))
        base = meter.stop(args.lookups)["agent"]
        logging.getLogger("chatbus.bus").setLevel(logging.ERROR)  # "disconnected": we drain
        await bus.drain()

        waits.sort()
        print(f"{args.users} profiles of {len(FACTS)} facts; CPU per lookup in µs")
        print(f"{'':22}{'agent':>8}{'memory':>8}{'NATS':>8}{'total':>8}{'per s':>8}")
        for name, m in (("one at a time", one), ("64 in flight", many)):
            agent = m["agent"] - base
            total = agent + m["memory"] + m["nats"]
            print(
                f"{name:22}{agent:8.0f}{m['memory']:8.0f}{m['nats']:8.0f}{total:8.0f}"
                f"{m['rate']:8.0f}"
            )
        print(
            f"latency one at a time: p50 {statistics.median(waits):.2f} ms, "
            f"p99 {waits[int(len(waits) * 0.99)]:.2f} ms"
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        nats.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=20_000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
