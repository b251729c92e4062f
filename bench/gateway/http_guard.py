"""What the slowloris guard (``chatbus.http_guard``) costs per request, against plain aiohttp.

    ./dev run python bench/gateway/http_guard.py --seconds 3 --rounds 2

Serves one tiny route from a separate process, once with ``web.AppRunner`` and once with
``GuardedAppRunner`` (alternating, ``--rounds`` times each), and drives it with keep-alive
connections and with a new connection per request. Prints the server's CPU time per request
(``time.process_time`` in the server process: steady on a busy machine, unlike requests/s),
and requests/s with p50/p99 latency for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time

import aiohttp
from aiohttp import web

from chatbus.http_guard import ConnectionLimits, GuardedAppRunner
from chatbus_dev.servers import free_port


def serve(port: int, guarded: bool, ready: multiprocessing.synchronize.Event) -> None:
    async def main() -> None:
        app = web.Application()
        app.router.add_get("/ping", lambda _: web.json_response({"ok": True}))
        app.router.add_post("/echo", _echo)
        app.router.add_get("/cpu", lambda _: web.json_response({"cpu": time.process_time()}))
        runner: web.AppRunner = (
            GuardedAppRunner(app, ConnectionLimits(max_per_ip=0), access_log=None)
            if guarded
            else web.AppRunner(app, access_log=None)
        )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def drive(
    url: str, seconds: float, concurrency: int, keep_alive: bool
) -> tuple[list[float], float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=0, force_close=not keep_alive)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"{url}/cpu") as r:
            cpu_before = (await r.json())["cpu"]

        async def worker() -> None:
            while time.perf_counter() < end:
                started = time.perf_counter()
                async with http.post(f"{url}/echo", data=b'{"message": "hi"}') as r:
                    await r.read()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        async with http.get(f"{url}/cpu") as r:
            cpu = (await r.json())["cpu"] - cpu_before
    return latencies, cpu


def run(guarded: bool, seconds: float, concurrency: int, keep_alive: bool) -> tuple[float, ...]:
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, guarded, ready), daemon=True)
    server.start()
    try:
        ready.wait(30)
        lat, cpu = asyncio.run(drive(f"http://127.0.0.1:{port}", seconds, concurrency, keep_alive))
    finally:
        server.terminate()
        server.join()
    q = statistics.quantiles(lat, n=100)
    return cpu / len(lat) * 1e6, len(lat) / seconds, q[49] * 1000, q[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    for keep_alive in (True, False):
        for guarded in [False, True] * args.rounds:
            cpu_us, rps, p50, p99 = run(guarded, args.seconds, args.concurrency, keep_alive)
            mode = "keep-alive" if keep_alive else "new conn  "
            name = "guarded" if guarded else "plain  "
            print(
                f"{mode} {name} {cpu_us:6.0f} µs CPU/request  {rps:6.0f} req/s  "
                f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
            )


if __name__ == "__main__":
    main()
