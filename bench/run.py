"""Throughput and added latency of the chat path: gateway -> NATS -> agent -> fake LLM.

    ./dev bench            # full run (about 2 minutes)
    ./dev bench --quick    # a short smoke run

Starts its own nats-server, redis-server, the offline model (in its own process, with 0 ms and
50 ms latency), one support agent and the gateway, then drives POST /api/chat/support with N
concurrent chats (each chat its own session). Reports msg/s, p50/p99 latency, CPU per message
(all processes: gateway, agent, NATS, Redis, fake LLM) and the latency the platform adds over
calling the fake LLM directly. Memory and cost services are off by default (--full turns
them on).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from chatbus.nats_server import start_nats
from chatbus.servers import ServerProcess, free_port, start_redis, wait_http_ok

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError):
            pass
    return total / CLK


@dataclass
class Result:
    label: str
    concurrency: int
    count: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu: float
    per_process: dict[int, float]

    p50_ms: float | None = None
    p99_ms: float | None = None

    def pct(self, q: float) -> float:
        if q == 0.5 and self.p50_ms is not None:
            return self.p50_ms
        if q == 0.99 and self.p99_ms is not None:
            return self.p99_ms
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")

    @property
    def rate(self) -> float:
        return self.count / self.seconds


async def drive(
    url: str,
    body_for,
    concurrency: int,
    seconds: float,  # type: ignore[no-untyped-def]
    pids: list[int],
    label: str,
) -> Result:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(w: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with http.post(url, json=body_for(w, i)) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)
                i += 1

        async def warm(w: int) -> None:
            async with http.post(url, json=body_for(w, -1)) as r:
                await r.read()

        await asyncio.gather(*(warm(w) for w in range(concurrency)))  # connections, caches
        before = {p: cpu_seconds([p]) for p in pids}
        latencies.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - t0
        per = {p: cpu_seconds([p]) - before[p] for p in pids}
    return Result(
        label, concurrency, len(latencies), errors, elapsed, latencies, sum(per.values()), per
    )


WRK_SCRIPT = r"""
counter = 0
function setup(thread) thread:set("tid", tostring(math.random(1, 1000000000))) end
request = function()
  counter = counter + 1
  local body = string.format(BODY, counter, tid, counter % SESSIONS)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %f %f %f\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""
WRK_BODIES = {
    "chat": '{"message":"Hello, this is message %d","session_id":"bench-%s-%d"}',
    "llm": '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a support '
    'agent."},{"role":"user","content":"Hello, this is message %d from %s-%d"}]}',
}


async def drive_wrk(
    url: str, kind: str, concurrency: int, seconds: float, pids: list[int], label: str
) -> Result:
    """The same load from wrk (C): the client's own CPU no longer competes with the stack."""
    sessions = max(concurrency * 4, 1)
    script = WRK_SCRIPT.replace("BODY", repr(WRK_BODIES[kind])).replace("SESSIONS", str(sessions))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    threads = min(2, concurrency)
    before = {p: cpu_seconds([p]) for p in pids}
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "-s",
        f.name,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    per = {p: cpu_seconds([p]) - before[p] for p in pids}
    line = next((x for x in out.decode().splitlines() if x.startswith("RESULT")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.decode()[-500:]}")
    n, errors, p50, p99, duration = line.split()[1:]
    count = int(n)
    # wrk reports percentiles, not samples: keep them as a two-point distribution.
    lat = [float(p50) / 1e6] * (count // 2) + [float(p99) / 1e6] * (count - count // 2)
    result = Result(
        label, concurrency, count, int(errors), float(duration) / 1e6, lat, sum(per.values()), per
    )
    result.p50_ms, result.p99_ms = float(p50) / 1000, float(p99) / 1000
    return result


class Stack:
    def __init__(self, tmp: Path, latency_ms: float, full: bool) -> None:
        self.tmp = tmp
        self.servers: list[ServerProcess] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}
        self.latency_ms = latency_ms
        self.full = full

    def spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        p = subprocess.Popen(
            [sys.executable, *args], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(p)
        self.names[p.pid] = name
        return p

    async def wait(self, url: str) -> None:
        if not await wait_http_ok(url, timeout=30):
            raise SystemExit(f"{url} never became ready; logs in {self.tmp}")

    async def start(self) -> tuple[str, str]:
        nats = start_nats(self.tmp / "nats")
        redis = start_redis()
        self.servers += [nats, redis]
        self.names[nats.proc.pid], self.names[redis.proc.pid] = "nats", "redis"
        llm_port = free_port()
        self.spawn(["-m", "chatbus.offline_llm", str(llm_port), str(self.latency_ms)], {}, "llm")
        await self.wait(f"http://127.0.0.1:{llm_port}/health")
        llm_url = f"http://127.0.0.1:{llm_port}/v1"
        base = {
            "NATS_URL": nats.url,
            "REDIS_URL": redis.url,
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "DATA_DIR": str(self.tmp / "data"),
            "OPENAI_BASE_URL": llm_url,
            "OPENAI_API_KEY": "bench",
        }
        flags = (
            {}
            if self.full
            else {"MEMORY_ENABLED": "false", "COST_ENABLED": "false", "CACHE_ENABLED": "false"}
        )
        if self.full:
            for module in ("chatbus_cost", "chatbus_memory"):
                port = free_port()
                self.spawn(["-m", module], {**base, "PORT": str(port)}, module)
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
            },
            "gateway",
        )
        await self.wait(f"http://127.0.0.1:{gw_port}/ready")
        return f"http://127.0.0.1:{gw_port}", llm_url

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs] + [s.proc.pid for s in self.servers]

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


def chat_body(w: int, i: int) -> dict[str, str]:
    return {"message": f"Hello, this is message {i} of chat {w}", "session_id": f"bench-{w}"}


def llm_body(w: int, i: int) -> dict[str, object]:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a support agent."},
            {"role": "user", "content": f"Hello, this is message {i} of chat {w}"},
        ],
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s per point instead of 10 s")
    ap.add_argument("--full", action="store_true", help="memory and cost services on")
    ap.add_argument("--latency-ms", type=float, nargs="*", default=[0.0, 50.0])
    ap.add_argument("--concurrency", type=int, nargs="*", default=[1, 64])
    ap.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk (C, when installed) or aiohttp in this process",
    )
    args = ap.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    seconds = 3.0 if args.quick else 10.0
    rows: list[Result] = []
    for latency in args.latency_ms:
        with tempfile.TemporaryDirectory(prefix="chatbus-bench-") as tmp:
            stack = Stack(Path(tmp), latency, args.full)
            try:
                gateway, llm_url = await stack.start()
                for c in args.concurrency:
                    pids = stack.pids()
                    llm, chat = f"{llm_url}/chat/completions", f"{gateway}/api/chat/support"
                    direct_label = f"LLM direct, {latency:g} ms"
                    label = f"via chatbus, {latency:g} ms"
                    if use_wrk:
                        direct = await drive_wrk(llm, "llm", c, seconds, pids, direct_label)
                        through = await drive_wrk(chat, "chat", c, seconds, pids, label)
                    else:
                        direct = await drive(llm, llm_body, c, seconds, pids, direct_label)
                        through = await drive(chat, chat_body, c, seconds, pids, label)
                    rows += [direct, through]
                    split = ", ".join(
                        f"{stack.names.get(p, p)} {v / max(through.count, 1) * 1000:.2f}"
                        for p, v in through.per_process.items()
                    )
                    print(
                        f"  {through.label} c={c}: {through.rate:,.0f} msg/s, p50 "
                        f"{through.pct(0.5):.2f} ms (direct {direct.pct(0.5):.2f} ms); "
                        f"CPU ms/msg: {split}",
                        flush=True,
                    )
            finally:
                stack.stop()
    print(
        f"\nchatbus bench ({'full: memory+cost on' if args.full else 'core path'}, "
        f"client {'wrk' if use_wrk else 'aiohttp'}), "
        f"{os.cpu_count()} cores, {seconds:g} s per point\n"
    )
    print("| path | concurrency | msg/s | p50 ms | p99 ms | errors | CPU ms/msg (all processes) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cpu_ms = r.cpu / r.count * 1000 if r.count else float("nan")
        print(
            f"| {r.label} | {r.concurrency} | {r.rate:,.0f} | {r.pct(0.5):.2f} | "
            f"{r.pct(0.99):.2f} | {r.errors} | {cpu_ms:.2f} |"
        )
    for i in range(0, len(rows), 2):
        direct, through = rows[i], rows[i + 1]
        print(
            f"added p50 at {through.label} c={through.concurrency}: "
            f"{through.pct(0.5) - direct.pct(0.5):.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
