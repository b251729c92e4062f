"""Cost service throughput: authorize latency and rate, usage events counted per second.

Run: ``./dev run python bench/cost/bench_cost.py [--events 20000] [--authorize 5000]``.
Starts its own nats-server and redis-server and the cost service as a process (with a
per-user budget, so every authorize runs the reserve script), then measures from a client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest
from chatbus.contracts.cost import UsageRecorded
from chatbus.cost_client import BusCosts, ensure_cost_stream
from chatbus_dev.nats_server import start_nats
from chatbus_dev.servers import free_port, start_redis


async def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit("cost service exited")
            try:
                async with http.get(url + "/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling a child process for readiness
    raise SystemExit("cost service not ready")


def req(i: int) -> ChatRequest:
    return ChatRequest(
        request_id=f"b-{i}", agent="support", session_id="s", message="x", user_id=f"u{i % 100}"
    )


async def bench(n_events: int, n_auth: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    nats, redis = start_nats(tmp / "nats"), start_redis()
    port = free_port()
    env = dict(os.environ)
    env.update(
        NATS_URL=nats.url,
        REDIS_URL=redis.url,
        PORT=str(port),
        HOST="127.0.0.1",
        LOG_LEVEL="WARNING",
        BUDGETS_JSON=json.dumps(
            [
                {"scope": "user", "period": "daily", "unit": "usd", "soft": 500, "hard": 1000},
                {"scope": "global", "period": "monthly", "unit": "usd", "hard": 100000},
            ]
        ),
    )
    proc = subprocess.Popen([sys.executable, "-m", "chatbus_cost"], env=env)  # noqa: ASYNC220
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
        bus = await Bus.connect(nats.url, service="bench")
        costs = BusCosts(bus)
        await ensure_cost_stream(bus)

        lat = []
        for i in range(min(n_auth, 2000)):
            t = time.perf_counter()
            await costs.authorize(
                req(i), model="gpt-4o", cheap_model="gpt-4o-mini", prompt_tokens=900
            )
            lat.append((time.perf_counter() - t) * 1000)
        q = statistics.quantiles(lat, n=100)
        print(f"authorize sequential: p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms ({len(lat)} calls)")

        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await costs.authorize(req(i), model="gpt-4o", cheap_model=None, prompt_tokens=900)

        t = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n_auth)))
        dt = time.perf_counter() - t
        print(f"authorize 64 in flight: {n_auth / dt:,.0f} req/s ({n_auth} calls, {dt:.2f} s)")

        now = time.time()
        t = time.perf_counter()
        pending = []
        for i in range(n_events):
            ev = UsageRecorded(
                event_id=f"e{i}",
                request_id=f"r{i}",
                agent="support",
                model="gpt-4o-mini",
                user_id=f"u{i % 100}",
                session_id=f"s{i % 1000}",
                prompt_tokens=500,
                completion_tokens=100,
                ts=now,
            )
            pending.append(
                await bus.js.publish_async(
                    ev.subject, ev.to_bytes(), headers={"Nats-Msg-Id": ev.event_id}
                )
            )
        await asyncio.gather(*pending)
        published = time.perf_counter() - t
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        while True:
            rep = await costs.report(tenant_id="default", from_date=day, to_date=day)
            if rep.total.requests >= n_events:
                break
            await asyncio.sleep(0.05)  # polling the eventually-consistent count
        dt = time.perf_counter() - t
        print(
            f"usage events: {n_events} published in {published:.2f} s, all counted after "
            f"{dt:.2f} s -> {n_events / dt:,.0f} events/s end to end"
        )
        await bus.drain(timeout=2)
    finally:
        proc.kill()
        proc.wait()
        nats.stop()
        redis.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--authorize", type=int, default=5000)
    a = p.parse_args()
    asyncio.run(bench(a.events, a.authorize))
