"""Evidence recall@1/5/10 on LoCoMo, a public set of long conversations, through the real API.

    ./dev run python bench/memory/eval_public.py             # all 10 conversations, 1,536 questions
    ./dev run python bench/memory/eval_public.py --quick     # the first 2 conversations
    ./dev run python bench/memory/eval_public.py --embeddings static   # another offline embedder

Starts its own nats-server, redis-server, the memory service (offline embedder, the shipped
defaults unless the environment sets ``MEMORY_*``) and the gateway, then per conversation:
``POST /api/sessions/{id}/messages`` with every turn's ``speaker`` and ``created_at`` (its
session's date; turns one second apart), and per question ``POST /api/memory/search`` with
``{session_id, query, limit: 10}``. A question counts as recalled at k when one of its evidence
turns is among the first k results. Recall is reported for the tune split (conversations 1-4,
on which the reranker and the settings were chosen), for the held-out test split
(conversations 5-10) and for all, with the memory service's CPU per imported turn and per search.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from public_set import CATEGORIES, PublicConversation, load, split
from stack import cpu_seconds

from chatbus_dev.nats_server import start_nats
from chatbus_dev.servers import ServerProcess, free_port, start_redis, wait_http_ok

KS = (1, 5, 10)
BATCH = 100  # turns per import request (the gateway caps a body's size)


class Services:
    def __init__(self, tmp: Path, embeddings: str | None = None) -> None:
        self.tmp = tmp
        self.embeddings = embeddings
        self.servers: list[ServerProcess] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, module: str, env: dict[str, str]) -> str:
        port = free_port()
        log = (self.tmp / f"{module}.log").open("ab")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        self.procs[module] = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**clean, **env, "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return f"http://127.0.0.1:{port}"

    async def start(self) -> str:
        nats, redis = start_nats(self.tmp / "nats"), start_redis()
        self.servers += [nats, redis]
        base = {
            "NATS_URL": nats.url,
            "REDIS_URL": redis.url,
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "DATA_DIR": str(self.tmp / "data"),
        }
        memory = self.spawn(
            "chatbus_memory", {**base, "EMBEDDINGS": self.embeddings} if self.embeddings else base
        )
        await self._ready(memory, "chatbus_memory")
        limits = ("IP", "KEY", "USER", "SESSION")
        gateway = self.spawn(
            "chatbus_gateway",
            {**base, "CHATBUS_AUTH": "off", **{f"RATE_{x}_PER_MIN": "0" for x in limits}},
        )
        await self._ready(gateway, "chatbus_gateway")
        return gateway

    async def _ready(self, url: str, name: str) -> None:
        pid = self.procs[name].pid
        if not await wait_http_ok(f"{url}/ready", timeout=120, pid=pid):
            raise SystemExit(f"{name} never became ready; its log is in {self.tmp}")

    def memory_cpu(self) -> float:
        return cpu_seconds(self.procs["chatbus_memory"].pid)

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in self.servers:
            s.stop()


async def post(http: aiohttp.ClientSession, url: str, body: object, ok: int) -> object:
    async with http.post(url, json=body) as r:
        if r.status != ok:
            raise SystemExit(f"{url}: {r.status} {await r.text()}")
        return await r.json()


async def import_conversation(http: aiohttp.ClientSession, gw: str, c: PublicConversation) -> None:
    turns = [
        {"role": "user", "content": t.text, "speaker": t.speaker, "created_at": t.at + n}
        for n, t in enumerate(c.turns)
    ]
    for i in range(0, len(turns), BATCH):
        await post(http, f"{gw}/api/sessions/{c.id}/messages", turns[i : i + BATCH], 201)


async def ask(
    http: aiohttp.ClientSession, gw: str, c: PublicConversation
) -> tuple[list[tuple[int, dict[int, bool]]], list[float]]:
    """Per question (category, recalled at k); and each search's latency."""
    by_time = {round(t.at + n, 3): t.id for n, t in enumerate(c.turns)}
    out, took = [], []
    for q in c.questions:
        t0 = time.perf_counter()
        body = {"session_id": c.id, "query": q.text, "limit": max(KS)}
        answer = await post(http, f"{gw}/api/memory/search", body, 200)
        took.append(time.perf_counter() - t0)
        assert isinstance(answer, dict)
        ids = [by_time.get(round(float(h["created_at"]), 3)) for h in answer["results"]]
        out.append((q.category, {k: any(e in ids[:k] for e in q.evidence) for k in KS}))
    return out, took


def row(label: str, results: list[tuple[int, dict[int, bool]]]) -> str:
    if not results:
        return f"  {label:24s} -"
    cells = "  ".join(f"R@{k} {sum(r[k] for _, r in results) / len(results):.3f}" for k in KS)
    return f"  {label:24s} {cells}  ({len(results)} questions)"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the first 2 conversations only")
    ap.add_argument(
        "--embeddings",
        choices=["local", "static", "minilm", "minilm-q8"],
        help="the memory service's offline embedder (default: EMBEDDINGS, else local)",
    )
    args = ap.parse_args()
    convs = load()
    tune_ids = {c.id for c in split(convs)[0]}
    if args.quick:
        convs = convs[:2]
    tmp = Path(tempfile.mkdtemp(prefix="eval-public-"))
    services = Services(tmp, args.embeddings)
    try:
        gw = await services.start()
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            cpu0, t0 = services.memory_cpu(), time.perf_counter()
            for c in convs:
                await import_conversation(http, gw, c)
            turns = sum(len(c.turns) for c in convs)
            cpu1, t1 = services.memory_cpu(), time.perf_counter()
            tune, test, took = [], [], []
            for c in convs:
                found, secs = await ask(http, gw, c)
                (tune if c.id in tune_ids else test).extend(found)
                took.extend(secs)
            cpu2 = services.memory_cpu()
    finally:
        services.stop()
    embedder = args.embeddings or os.environ.get("EMBEDDINGS") or "local"
    print(
        f"LoCoMo via the gateway: {len(convs)} conversations, {turns} turns, {len(took)} questions"
        f" (EMBEDDINGS={embedder})"
    )
    print(row("tune (conv. 1-4)", tune))
    print(row("test (conv. 5-10, held out)", test))
    print(row("all", tune + test))
    everything = tune + test
    for cat, name in CATEGORIES.items():
        print(row(f"  {name}", [r for r in everything if r[0] == cat]))
    print(
        f"import: {turns / (t1 - t0):.0f} turns/s, memory CPU "
        f"{1000 * (cpu1 - cpu0) / turns:.2f} ms per turn (offline embedder included)"
    )
    took.sort()
    print(
        f"search: p50 {1000 * statistics.median(took):.1f} ms, "
        f"p99 {1000 * took[int(0.99 * (len(took) - 1))]:.1f} ms (through the gateway), "
        f"memory CPU {1000 * (cpu2 - cpu1) / len(took):.2f} ms per search"
    )


if __name__ == "__main__":
    asyncio.run(main())
