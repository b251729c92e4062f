"""Throughput, latency and CPU per message of chatbus: the full default stack first, then the core.

    ./dev bench                          # full stack (embeddings on the mock), then core; 30 s
    ./dev bench --embeddings local       # full stack with the offline MiniLM embedder
    ./dev bench --deep                   # also: long sessions (50 turns deep, recall runs)
    ./dev bench --seconds 300 --no-core  # the 5-minute sustained run

Starts its own nats-server, redis-server and the offline model (chat and ``/v1/embeddings``
of 64 dimensions unless ``--embedding-dims``; its own process, outside the stack), then the
stack ``./dev up`` runs — gateway, support agent, memory, cost — and drives
``POST /api/chat/support`` with wrk (64 connections by default; an aiohttp client when wrk is
missing), **every message a new session**. Then the same on the core path (gateway + agent,
memory and cost off).

Reports msg/s, p50/p99, CPU per message of every process, the memory service's write backlog
(JetStream messages not yet stored) at the start and end of the run and how long it took to
drain afterwards, and how busy the machine was (other users of the cores make figures noisy).
With ``--deep`` each of 64 chats first gets 25 messages (50 turns), then the run goes on in
those sessions, so the agent recalls on every message: the memory service's search p50/p99 is
read from its ``chatbus_memory_search_seconds`` histogram.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
from bench_load import LoadResult, drive_python, drive_wrk, prefill_deep, search_quantiles
from stack import Stack, cpu_seconds, machine_busy, rss_mib


@dataclass
class Row:
    label: str
    load: LoadResult
    cpu: dict[str, float]  # ms per message by process
    busy_cores: float  # whole machine during the run
    ours_cores: float  # this stack + the load generator
    backlog: tuple[int, int] | None = None  # memory write backlog at start, end
    drain_s: float | None = None
    search_ms: tuple[float, float] | None = None
    rss: dict[str, tuple[float, float]] = field(default_factory=dict)


async def memory_backlog(nats_url: str) -> int:
    """Turn events the memory service has not stored yet (its durable consumers; a batch of
    concurrent messages' events counts as one)."""
    nc = await nats.connect(nats_url)
    try:
        total = 0
        for durable in ("memory-turns", "memory-turns-batch", "memory-store"):
            info = await nc.jetstream().consumer_info("MEMORY", durable)
            total += int(info.num_pending + info.num_ack_pending)
        return total
    finally:
        await nc.close()


async def progress(stack: Stack, every: float) -> None:
    """Every ``every`` s of a full-stack run: turns stored, memory CPU per message, backlog, RSS.

    Stored turns are counted from the service's ``memory.indexed.v1`` notices (two per answered
    message), so memory's CPU per message is over what it stored in the interval: a store that
    slows down as it grows shows here. The backlog is in events (a batch of messages is one).
    """
    pid = stack.pid_of("memory")
    if pid is None:
        return
    nc = await nats.connect(stack.nats_url)
    turns = 0

    async def on_notice(msg: Any) -> None:
        nonlocal turns
        turns += len(json.loads(msg.data).get("event_ids") or [])

    await nc.subscribe("memory.indexed.v1", cb=on_notice)
    started = time.perf_counter()
    last = (0.0, 0, cpu_seconds(pid))  # when, turns stored, memory CPU
    try:
        while True:
            await asyncio.sleep(every)  # allowed: the reporting interval
            pending = await memory_backlog(stack.nats_url)
            now, stored, cpu = time.perf_counter() - started, turns, cpu_seconds(pid)
            messages = (stored - last[1]) / 2
            rss, heap = rss_mib(pid)
            print(
                f"    {now:5.0f} s: {messages / max(now - last[0], 1e-9):,.0f} msg/s stored, "
                f"{stored:,} turns stored, backlog {pending:,} events, memory "
                f"{(cpu - last[2]) / max(messages, 1) * 1000:.2f} ms CPU per message, RSS "
                f"{rss:.0f} MiB (heap {heap:.0f})",
                flush=True,
            )
            last = (now, stored, cpu)
    finally:
        await nc.close()


async def drain(nats_url: str, limit_s: float = 120.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if await memory_backlog(nats_url) == 0:
            return time.perf_counter() - started
        await asyncio.sleep(0.2)  # allowed: polling the backlog of another process
    return float("inf")


async def measure(stack: Stack, label: str, kind: str, args: argparse.Namespace) -> Row:
    pids = stack.pids()
    url = f"{stack.gateway}/api/chat/support"
    before = {p: cpu_seconds(p) for p in pids}
    busy0, total0 = machine_busy()
    backlog0 = await memory_backlog(stack.nats_url) if stack.full else None
    search0 = await search_quantiles(stack.memory_url) if stack.full else None
    every = args.progress if args.progress is not None else (60.0 if args.seconds >= 300 else 0)
    ticker = asyncio.create_task(progress(stack, every)) if stack.full and every > 0 else None
    try:
        if args.use_wrk:
            load = await drive_wrk(url, kind, args.concurrency, args.seconds)
        else:
            load = await drive_python(url, kind, args.concurrency, args.seconds)
    finally:
        if ticker is not None:
            ticker.cancel()
    busy1, total1 = machine_busy()
    spent = {p: cpu_seconds(p) - before[p] for p in pids}
    n = max(load.count, 1)
    cpu = {stack.names.get(p, str(p)): v / n * 1000 for p, v in spent.items()}
    cores = os.cpu_count() or 1
    elapsed = (total1 - total0) / cores
    row = Row(
        label,
        load,
        cpu,
        busy_cores=(busy1 - busy0) / max(elapsed, 1e-9),
        ours_cores=(sum(spent.values()) + load.client_cpu) / max(elapsed, 1e-9),
    )
    if stack.full:
        backlog1 = await memory_backlog(stack.nats_url)
        row.backlog = (backlog0 or 0, backlog1)
        row.drain_s = await drain(stack.nats_url)
        if kind == "deep":
            row.search_ms = await search_quantiles(stack.memory_url, since=search0)
    row.rss = {stack.names.get(p, str(p)): rss_mib(p) for p in pids}
    return row


def report(row: Row) -> None:
    load = row.load
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in row.cpu.items())
    print(
        f"  {row.label}: {load.rate:,.0f} msg/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} "
        f"ms, errors {load.errors}; CPU ms/msg: {cpu}",
        flush=True,
    )
    if row.backlog is not None:
        print(
            f"    memory write backlog {row.backlog[0]} -> {row.backlog[1]} events, drained in "
            f"{row.drain_s:.1f} s after the load stopped",
            flush=True,
        )
    if row.search_ms is not None:
        print(f"    memory search p50 {row.search_ms[0]:.2f} ms, p99 {row.search_ms[1]:.2f} ms")
    rss = ", ".join(f"{k} {v[0]:.0f} (heap {v[1]:.0f})" for k, v in row.rss.items())
    print(
        f"    machine busy {row.busy_cores:.2f} of {os.cpu_count()} cores, this bench "
        f"{row.ours_cores:.2f}; RSS MiB: {rss}",
        flush=True,
    )


async def run_stack(full: bool, args: argparse.Namespace, latency: float) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="chatbus-bench-") as tmp:
        stack = Stack(
            Path(tmp),
            latency_ms=latency,
            full=full,
            embeddings=args.embeddings,
            embedding_dims=args.embedding_dims,
        )
        try:
            await stack.start()
            what = f"full, embeddings {args.embeddings}" if full else "core (memory, cost off)"
            label = f"{what}, model {latency:g} ms, new session per message"
            rows.append(await measure(stack, label, "new", args))
            report(rows[-1])
            if full and args.deep:
                async with aiohttp.ClientSession() as http:
                    await prefill_deep(http, f"{stack.gateway}/api/chat/support", args)
                await drain(stack.nats_url)
                label = f"{what}, model {latency:g} ms, 50-turn sessions (recall runs)"
                rows.append(await measure(stack, label, "deep", args))
                report(rows[-1])
        finally:
            stack.stop()
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    ap.add_argument("--quick", action="store_true", help="10 s runs")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument(
        "--embeddings",
        choices=["openai", "local", "static", "minilm", "minilm-q8"],
        default="openai",
    )
    ap.add_argument(
        "--embedding-dims",
        type=int,
        default=64,
        help="the mock's vector size (64, its default; text-embedding-3-small gives 1536)",
    )
    ap.add_argument("--deep", action="store_true", help="also long sessions (recall runs)")
    ap.add_argument("--no-core", action="store_true", help="skip the core path")
    ap.add_argument("--no-full", action="store_true", help="skip the full stack")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="the mock model's latency")
    ap.add_argument(
        "--progress",
        type=float,
        default=None,
        help="a line every N s of a full-stack run (default 60 for runs of 5 minutes or more)",
    )
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 10.0
    args.use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    rows: list[Row] = []
    if not args.no_full:
        rows += await run_stack(True, args, args.latency_ms)
    if not args.no_core:
        rows += await run_stack(False, args, args.latency_ms)
    print(
        f"\nchatbus bench: {args.concurrency} connections, {args.seconds:g} s per run, client "
        f"{'wrk' if args.use_wrk else 'aiohttp'}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    print("| run | msg/s | p50 ms | p99 ms | errors | CPU ms/msg by process | backlog | busy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu.items() if v >= 0.005)
        backlog = f"{r.backlog[0]}→{r.backlog[1]}" if r.backlog else "—"
        print(
            f"| {r.label} | {r.load.rate:,.0f} | {r.load.p50_ms:.1f} | {r.load.p99_ms:.1f} | "
            f"{r.load.errors} | {cpu} | {backlog} | {r.busy_cores:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
