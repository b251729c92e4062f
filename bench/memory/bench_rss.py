"""Memory of the memory service per stored turn: is it a leak, or the index?

    ./dev run python bench/memory/bench_rss.py                 # 100k turns, 384 dims (MiniLM)
    ./dev run python bench/memory/bench_rss.py --dims 1536     # text-embedding-3-small's size
    ./dev run python bench/memory/bench_rss.py --trace         # + Python heap (tracemalloc; slow)
    ./dev run python bench/memory/bench_rss.py --embedder no-arena   # the local embedder's RSS
    ./dev run python bench/memory/bench_rss.py --dims 64 --session-turns 2   # the bench's sessions
    ./dev run python bench/memory/bench_rss.py --service --dims 64 --turns 1200000 --window 130000

``--service`` runs the memory service itself (with its own NATS, Redis and the offline model for
embeddings) and feeds it ``TurnsStored`` events through JetStream as agents do, every event a
new session of two turns, keeping at most ``--window`` events pending (``--rate``: a fixed
rate instead); every ``--interval`` s it prints stored turns, the backlog, the service's CPU per
event and its RSS (heap, mapped files). ``MEMORY_HEAP_TRACE_S=60`` in the environment makes the
service log its Python heap (tracemalloc) too.

Stores turns through the service's engine into the embedded store exactly as the JetStream
consumer does (batches of 256; random unit vectors stand in for embeddings, real BM25 vectors
and payloads; sessions of 50 turns, users of 5 sessions), with the background optimiser the
service runs. Every 10k turns it prints the process's RSS, the part of it that is anonymous
memory (heap: what the process holds; the rest are pages of memory-mapped files, which the
kernel drops under pressure), the Python heap when ``--trace``, the number of live Python
objects, and the shard's size on disk. A leak shows as Python objects or heap that grow
without bound; an index shows as heap that grows with the points and stops at compaction.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from conversations import generate

from chatbus.contracts.chat import Turn
from chatbus_memory.engine import Caps, Engine, Incoming
from chatbus_memory.store_edge import EdgeStore
from chatbus_memory.summarize import ExtractiveSummarizer
from chatbus_memory.text import Chunker, SparseEncoder


class RandomVectors:
    model = "random"

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.rng = np.random.default_rng(1)

    async def embed(self, texts: list[str]) -> np.ndarray:
        v = self.rng.standard_normal((len(texts), self.dims)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name = line.split(":", 1)[0]
        if name in ("VmRSS", "RssAnon", "RssFile"):
            out[name] = int(line.split()[1]) / 1024
    return out


def disk_mib(path: Path) -> float:
    """Space used (blocks: memory-mapped files are sparse, their size says little)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def line(n: int, path: Path, trace: bool, started: float, cpu_ms: float | None = None) -> str:
    s = status()
    heap = f", Python heap {tracemalloc.get_traced_memory()[0] / 2**20:.0f}" if trace else ""
    cpu = "" if cpu_ms is None else f", {cpu_ms * 1e6:.0f} µs CPU per turn since the last line"
    return (
        f"{n:>7} turns: RSS {s['VmRSS']:.0f} MiB (heap {s['RssAnon']:.0f}, mapped files "
        f"{s['RssFile']:.0f}){heap}, Python objects {len(gc.get_objects()):,}, disk "
        f"{disk_mib(path):.0f} MiB, wal {disk_mib(path / 'wal'):.0f} MiB, "
        f"{time.perf_counter() - started:.0f} s{cpu}"
    )


def embedder_rss(arena: bool) -> None:
    from chatbus_memory.embedder import LocalEmbedder

    texts = [t for c in generate(10, seed=3) for _, _, t in c.turns][:1500]
    texts += [" ".join([t] * 8) for t in texts[:200]]  # long turns, as an import brings
    emb = LocalEmbedder(threads=1, mem_arena=arena)
    before = status()
    cpu = time.process_time()
    for i in range(0, len(texts), 256):
        emb.embed_sync(texts[i : i + 256])
    after = status()
    print(
        f"local embedder, arena {'on' if arena else 'off'}: RSS {before['VmRSS']:.0f} -> "
        f"{after['VmRSS']:.0f} MiB (heap {before['RssAnon']:.0f} -> {after['RssAnon']:.0f}), "
        f"{(time.process_time() - cpu) / len(texts) * 1000:.2f} ms CPU per text"
    )


def proc_status(pid: int) -> dict[str, float]:
    out = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            name = row.split(":", 1)[0]
            if name in out:
                out[name] = int(row.split()[1]) / 1024
    except OSError:
        pass
    return out


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def service_soak(args: argparse.Namespace) -> None:
    """The memory service itself, fed turn events through JetStream as agents send them."""
    import hashlib
    import subprocess

    import nats

    from chatbus.contracts.memory import TurnsStored
    from chatbus_dev.nats_server import start_nats
    from chatbus_dev.servers import free_port, start_redis, wait_http_ok

    tmp = Path(tempfile.mkdtemp(prefix="memsoak-"))
    nats_server = start_nats(tmp / "nats")
    redis = start_redis()
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(cmd: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (tmp / f"{name}.log").open("ab")
        p = subprocess.Popen(
            [sys.executable, *cmd], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append(p)
        return p

    try:
        llm_port, mem_port = free_port(), free_port()
        spawn(
            [
                "-m",
                "chatbus_dev.offline_llm",
                str(llm_port),
                "0",
                "--embedding-dims",
                str(args.dims),
            ],
            {},
            "mock-llm",
        )
        assert await wait_http_ok(f"http://127.0.0.1:{llm_port}/health", timeout=60)
        memory = spawn(
            ["-m", "chatbus_memory"],
            {
                "NATS_URL": nats_server.url,
                "REDIS_URL": redis.url,
                "HOST": "127.0.0.1",
                "PORT": str(mem_port),
                "LOG_LEVEL": "WARNING",
                "DATA_DIR": str(tmp / "data"),
                "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
                "OPENAI_API_KEY": "bench",
                "EMBEDDINGS": "openai",
            },
            "memory",
        )
        assert await wait_http_ok(f"http://127.0.0.1:{mem_port}/ready", timeout=60)
        print(f"memory pid {memory.pid}, nats pid {nats_server.proc.pid}, logs in {tmp}")
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        answer = (
            "[offline model] support here. I received 1 context message and your message: "
            "'Hello, this is message {i} of this chat'. Set OPENAI_API_KEY (or "
            "OPENAI_BASE_URL) for real answers."
        )
        events = args.turns // 2
        sent = 0
        started = time.perf_counter()
        last_t, last_cpu, last_stored = started, proc_cpu(memory.pid), 0
        next_line = started + args.interval

        async def backlog() -> int:
            info = await js.consumer_info("MEMORY", "memory-turns")
            return int(info.num_pending + info.num_ack_pending)

        while True:
            pending = await backlog()
            room = min(args.window - pending, events - sent)
            if args.rate:
                due = int((time.perf_counter() - started) * args.rate) - sent
                room = min(room, due)
            for _ in range(max(0, min(room, 2000))):
                i = sent
                session = f"new-{i}"
                event_id = hashlib.sha256(f"default\0{session}\0r{i}".encode()).hexdigest()[:40]
                msg = f"Hello, this is message {i // 2} of this chat"
                event = TurnsStored(
                    event_id=event_id,
                    session_id=session,
                    turns=[
                        Turn(role="user", content=msg, created_at=time.time()),
                        Turn(
                            role="assistant",
                            content=answer.format(i=i // 2),
                            agent="support",
                            created_at=time.time(),
                        ),
                    ],
                )
                await js.publish_async(
                    TurnsStored.subject,
                    event.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": event_id},
                )
                sent += 1
            await js.publish_async_completed()
            now = time.perf_counter()
            if now >= next_line or (sent >= events and pending == 0):
                stored = sent - pending
                cpu = proc_cpu(memory.pid)
                per = (cpu - last_cpu) / max(stored - last_stored, 1) * 1000
                m, n = proc_status(memory.pid), proc_status(nats_server.proc.pid)
                print(
                    f"{now - started:6.0f} s: {stored * 2:>9,} turns stored, backlog {pending:>6} "
                    f"events, {(stored - last_stored) / (now - last_t):5.0f} events/s, memory "
                    f"{per:.3f} ms CPU per event, RSS {m['VmRSS']:.0f} MiB (heap "
                    f"{m['RssAnon']:.0f}, files {m['RssFile']:.0f}), NATS {n['VmRSS']:.0f}",
                    flush=True,
                )
                last_t, last_cpu, last_stored = now, cpu, stored
                next_line = now + args.interval
                if sent >= events and pending == 0:
                    break
            if room <= 0:
                await asyncio.sleep(0.05)  # allowed: pacing the publisher
        await nc.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        redis.stop()
        nats_server.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--trace", action="store_true", help="Python heap through tracemalloc")
    ap.add_argument("--session-turns", type=int, default=50, help="turns per session")
    ap.add_argument("--every", type=int, default=10_000, help="a line every this many turns")
    ap.add_argument(
        "--embedder",
        choices=["off", "arena", "no-arena"],
        default="off",
        help="instead: the local MiniLM embedder's RSS over 1,700 texts (onnxruntime arena)",
    )
    ap.add_argument(
        "--service",
        action="store_true",
        help="instead: the memory service process, fed events through JetStream",
    )
    ap.add_argument("--rate", type=float, default=0.0, help="--service: events/s (0: all it takes)")
    ap.add_argument("--window", type=int, default=5000, help="--service: most events pending")
    ap.add_argument("--interval", type=float, default=20.0, help="--service: seconds per line")
    args = ap.parse_args()
    if args.service:
        await service_soak(args)
        return
    if args.embedder != "off":
        embedder_rss(args.embedder == "arena")
        return
    if args.trace:
        tracemalloc.start(1)
    path = Path(tempfile.mkdtemp(prefix="memrss-")) / "shard"
    # the service's defaults: optimise after 5,000 changes, and when idle
    store = EdgeStore(path)
    await store.open(args.dims)
    engine = Engine(
        store, RandomVectors(args.dims), SparseEncoder(), Chunker(), ExtractiveSummarizer(), Caps()
    )
    texts = [(w, t) for c in generate(40, seed=3) for _, w, t in c.turns]
    print(f"cores {os.cpu_count()}, {args.dims} dims, pid {os.getpid()}")
    started = time.perf_counter()
    print(line(0, path, args.trace, started), flush=True)
    batch = 256
    per = args.session_turns
    cpu0 = time.process_time()
    for start in range(0, args.turns, batch):
        items = []
        for i in range(start, min(start + batch, args.turns)):
            who, text = texts[i % len(texts)]
            turn = Turn(role="user" if i % 2 == 0 else "assistant", content=text, speaker=who)
            items.append(Incoming("bench", f"s{i // per}", f"e{i}", turn, f"u{i // (per * 5)}"))
        await engine.store_turns(items)
        done = start + len(items)
        if done % args.every < batch:
            cpu1 = time.process_time()
            print(line(done, path, args.trace, started, (cpu1 - cpu0) / args.every), flush=True)
            cpu0 = cpu1
    await asyncio.to_thread(store._s().optimize)
    gc.collect()
    print("after optimise: " + line(args.turns, path, args.trace, started), flush=True)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
