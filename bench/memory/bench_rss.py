"""Memory of the memory service per stored turn: is it a leak, or the index?

    ./dev run python bench/memory/bench_rss.py                 # 100k turns, 384 dims (MiniLM)
    ./dev run python bench/memory/bench_rss.py --dims 1536     # text-embedding-3-small's size
    ./dev run python bench/memory/bench_rss.py --trace         # + Python heap (tracemalloc; slow)
    ./dev run python bench/memory/bench_rss.py --embedder no-arena   # the local embedder's RSS

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


def line(n: int, path: Path, trace: bool, started: float) -> str:
    s = status()
    heap = f", Python heap {tracemalloc.get_traced_memory()[0] / 2**20:.0f}" if trace else ""
    return (
        f"{n:>7} turns: RSS {s['VmRSS']:.0f} MiB (heap {s['RssAnon']:.0f}, mapped files "
        f"{s['RssFile']:.0f}){heap}, Python objects {len(gc.get_objects()):,}, disk "
        f"{disk_mib(path):.0f} MiB, wal {disk_mib(path / 'wal'):.0f} MiB, "
        f"{time.perf_counter() - started:.0f} s"
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


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--trace", action="store_true", help="Python heap through tracemalloc")
    ap.add_argument(
        "--embedder",
        choices=["off", "arena", "no-arena"],
        default="off",
        help="instead: the local MiniLM embedder's RSS over 1,700 texts (onnxruntime arena)",
    )
    args = ap.parse_args()
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
    for start in range(0, args.turns, batch):
        items = []
        for i in range(start, min(start + batch, args.turns)):
            who, text = texts[i % len(texts)]
            turn = Turn(role="user" if i % 2 == 0 else "assistant", content=text, speaker=who)
            items.append(Incoming("bench", f"s{i // 50}", f"e{i}", turn, f"u{i // 250}"))
        await engine.store_turns(items)
        done = start + len(items)
        if done % 10_000 < batch:
            print(line(done, path, args.trace, started), flush=True)
    await asyncio.to_thread(store._s().optimize)
    gc.collect()
    print("after optimise: " + line(args.turns, path, args.trace, started), flush=True)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
