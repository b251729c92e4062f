"""What one model call costs the agent's process in CPU, by HTTP client.

    ./dev run python bench/agent/llm_client.py --calls 4000 --rounds 3

Serves the offline model from a separate process (0 ms latency), then makes ``--calls`` chat
calls from this process at 64 in flight and at 1, with each client in turn (alternating,
``--rounds`` times): the agent's own client (``chatbus.agent.llm.OpenAIChat``, aiohttp), the
same streamed (SSE), and the ``openai`` SDK (httpx). Prints the median of this process's CPU
time per call (``time.process_time``: steady on a busy machine, unlike calls/s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

from chatbus.agent.llm import OpenAIChat
from chatbus_dev.servers import free_port

MESSAGES = [
    {"role": "system", "content": "You are the support agent of a small online shop."},
    {"role": "user", "content": "Hello! Where is my order 12345?"},
]
Call = Callable[[], Awaitable[str]]


async def wait_up(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{base}/models") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling for the server process to listen
    raise RuntimeError("the offline model did not start")


async def clients(base: str) -> dict[str, tuple[Call, Callable[[], Awaitable[None]]]]:
    out: dict[str, tuple[Call, Callable[[], Awaitable[None]]]] = {}
    chat = OpenAIChat(base, "sk-bench")

    async def plain() -> str:
        done = await chat.complete(
            MESSAGES, model="gpt-4o-mini", temperature=0, agent="support", timeout_s=30
        )
        return done.content

    async def ignore(_: str) -> None:
        return None

    async def streamed() -> str:
        done = await chat.complete(
            MESSAGES,
            model="gpt-4o-mini",
            temperature=0,
            agent="support",
            timeout_s=30,
            on_delta=ignore,
        )
        return done.content

    out["chatbus (aiohttp)"] = (plain, chat.close)
    out["chatbus (aiohttp), streamed"] = (streamed, chat.close)
    try:
        from openai import AsyncOpenAI
    except ImportError:
        return out
    sdk = AsyncOpenAI(base_url=base, api_key="sk-bench", max_retries=0)

    async def with_sdk() -> str:
        done = await sdk.chat.completions.create(
            messages=MESSAGES,  # type: ignore[arg-type]
            model="gpt-4o-mini",
            temperature=0,
            extra_headers={"X-Chatbus-Agent": "support"},
            timeout=30,
        )
        return done.choices[0].message.content or ""

    out["openai SDK (httpx)"] = (with_sdk, sdk.close)
    return out


async def measure(call: Call, calls: int, concurrency: int) -> tuple[float, float]:
    """(µs of CPU per call, calls/s)."""
    for _ in range(50):  # warm: connections, caches
        await call()
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / calls * 1e6, calls / wall


async def run(base: str, calls: int, rounds: int) -> None:
    await wait_up(base)
    variants = await clients(base)
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for name, (call, _close) in variants.items():
            for concurrency in (64, 1):
                n = calls if concurrency > 1 else calls // 4
                results.setdefault((name, concurrency), []).append(
                    await measure(call, n, concurrency)
                )
    for _call, close in variants.values():
        await close()
    print("| client | in flight | µs CPU per call (median) | calls/s |")
    print("|---|---|---|---|")
    for (name, concurrency), runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] for r in runs)
        print(f"| {name} | {concurrency} | {cpu:.0f} | {rate:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "chatbus_dev.offline_llm", str(port)], stdout=subprocess.DEVNULL
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(run(f"http://127.0.0.1:{port}/v1", args.calls, args.rounds))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
