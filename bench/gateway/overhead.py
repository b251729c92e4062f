"""The gateway's own cost: gateway -> NATS -> an agent that answers at once (no model).

    ./dev run python bench/gateway/overhead.py [--seconds 5] [--limits]

Starts nats-server, redis-server, ``echo_agent.py`` and the gateway as processes, then drives
1 and 64 (``--concurrency``) concurrent chats with ``load.py``. Reports msg/s, p50/p99 and
the gateway's CPU per message. ``--limits`` turns the rate limits on (set high enough never
to refuse).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from chatbus_dev.nats_server import start_nats
from chatbus_dev.servers import free_port, start_redis, wait_http_ok

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from load import parser as load_parser  # noqa: E402
from load import run_load  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


async def wait_ready(url: str) -> None:
    if not await wait_http_ok(url, timeout=20):
        raise SystemExit(f"{url} never became ready")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--limits", action="store_true")
    ap.add_argument("--concurrency", type=int, nargs="*", default=[1, 64])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gw-overhead-"))
    nats, redis = start_nats(tmp / "nats"), start_redis()
    limit = "1000000" if args.limits else "0"
    port = free_port()
    env = {
        **os.environ,
        "NATS_URL": nats.url,
        "REDIS_URL": redis.url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        **{k: limit for k in ("RATE_IP_PER_MIN", "RATE_KEY_PER_MIN", "RATE_USER_PER_MIN")},
        **{k: limit for k in ("RATE_SESSION_PER_MIN", "TOKENS_KEY_PER_MIN")},
        "HTTP_MAX_CONNECTIONS_PER_IP": "0",  # every simulated user shares one address here
    }
    echo = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [sys.executable, str(HERE / "echo_agent.py"), "echo"], env=env
    )
    gateway = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [sys.executable, "-m", "chatbus_gateway"], env=env
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}/ready")
        print(f"gateway overhead ({'limits on' if args.limits else 'limits off'}), 2 cores shared")
        for concurrency in args.concurrency:
            load_args = load_parser().parse_args(
                [
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--agent",
                    "echo",
                    "--concurrency",
                    str(concurrency),
                    "--seconds",
                    str(args.seconds),
                ]
            )
            before = cpu_s(gateway.pid)
            result = (await run_load(load_args)).summary()
            cpu_ms = (cpu_s(gateway.pid) - before) / max(result["messages"], 1) * 1000
            print(
                f"  c={concurrency}: {result['msg_per_s']:,.0f} msg/s, p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms, errors {result['errors'] or 'none'}, "
                f"gateway CPU {cpu_ms:.3f} ms/msg (incl. warm-up)"
            )
    finally:
        for p in (gateway, echo):
            p.terminate()
            p.wait(10)
        nats.stop()
        redis.stop()


if __name__ == "__main__":
    asyncio.run(main())
