"""Drive N concurrent chats against a running gateway; report msg/s and latency percentiles.

    ./dev run python bench/gateway/load.py --url http://127.0.0.1:8080 --concurrency 64 --seconds 10

Each chat is its own session and sends its messages one after another (as a user would).
``--openai`` uses ``POST /v1/chat/completions`` instead of the native API, ``--stream`` asks
for server-sent events (latency = until the last event), ``--key`` sends a bearer key.
Prints one human line, and the numbers as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Load:
    ok: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.ok,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "msg_per_s": round(self.ok / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(self.pct(0.50), 2),
            "p90_ms": round(self.pct(0.90), 2),
            "p99_ms": round(self.pct(0.99), 2),
        }


def request_for(args: argparse.Namespace, chat: int, i: int) -> tuple[str, dict[str, Any]]:
    text = f"Hello, this is message {i} of chat {chat}"
    if args.openai:
        body: dict[str, Any] = {
            "model": args.agent,
            "messages": [{"role": "user", "content": text}],
            "stream": args.stream,
        }
        return f"{args.url}/v1/chat/completions", body
    return f"{args.url}/api/chat/{args.agent}", {"message": text, "session_id": f"load-{chat}"}


async def run_load(args: argparse.Namespace) -> Load:
    load = Load()
    headers = {"Accept": "text/event-stream"} if args.stream else {}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def one(chat: int, i: int, record: bool) -> None:
            url, body = request_for(args, chat, i)
            extra = {"X-Session-Id": f"load-{chat}"} if args.openai else {}
            started = time.perf_counter()
            async with http.post(url, json=body, headers=extra) as r:
                await r.read()
                status = r.status
            if not record:
                return
            if status == 200:
                load.ok += 1
                load.latencies.append(time.perf_counter() - started)
            else:
                load.errors[status] = load.errors.get(status, 0) + 1

        async def chat(c: int, deadline: float) -> None:
            i = 0
            while time.perf_counter() < deadline:
                await one(c, i, True)
                i += 1

        # Warm up: open the connections, let every layer see a first message.
        await asyncio.gather(*(one(c, -1, False) for c in range(args.concurrency)))
        started = time.perf_counter()
        deadline = started + args.seconds
        await asyncio.gather(*(chat(c, deadline) for c in range(args.concurrency)))
        load.seconds = time.perf_counter() - started
    return load


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    p.add_argument("--agent", default="support")
    p.add_argument("--concurrency", type=int, default=64, help="chats running at once")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--openai", action="store_true", help="use /v1/chat/completions")
    p.add_argument("--stream", action="store_true", help="ask for server-sent events")
    p.add_argument("--key", default="", help="API key (when CHATBUS_AUTH=on)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    result = asyncio.run(run_load(args)).summary()
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['msg_per_s']:,.0f} msg/s at {args.concurrency} chats "
            f"({result['messages']} in {result['seconds']} s); p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms; errors {result['errors'] or 'none'}"
        )
    return result


if __name__ == "__main__":
    main()
