"""Memory service speed: storing with the local embedder, and hybrid search at 100k turns.

    ./dev run python bench/memory/bench_speed.py            # 100k stored turns
    ./dev run python bench/memory/bench_speed.py --quick    # 20k
    ./dev run python bench/memory/bench_speed.py --embedders   # CPU per text of each embedder

Store: turns go through the service's engine exactly as the JetStream consumer hands them over
(batches of 64: chunk, embed with all-MiniLM-L6-v2 on onnxruntime, BM25, upsert into the
embedded store), with an empty embedding cache. Search: the store is filled with N turns over
many sessions (random unit vectors stand in for embeddings, real BM25 vectors from generated
text), optimised as the service does in the background, then hybrid searches (dense + BM25,
fused) are timed, excluding the query's embedding, as p50/p99 over many queries.

Embedders (``--embedders``): CPU ms per text (this process's CPU time, which a busy machine
inflates less than wall time) of each offline embedder configuration, on the generated
conversations' turns in batches of 64 as the service's consumer hands them over, and on
1-text batches (a search's query). Also the static embedder's table build (or load) time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from conversations import generate

from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import SearchMemory
from chatbus_memory.embedder import LocalEmbedder, Vectors
from chatbus_memory.engine import Caps, Engine, Incoming
from chatbus_memory.quantized import quantized_model
from chatbus_memory.static_embedder import StaticEmbedder
from chatbus_memory.store_edge import EdgeStore
from chatbus_memory.summarize import ExtractiveSummarizer
from chatbus_memory.text import Chunker, SparseEncoder


class RandomVectors:
    model = "random"
    dims = 384

    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)

    async def embed(self, texts: list[str]) -> np.ndarray:
        v = self.rng.standard_normal((len(texts), self.dims)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def corpus_texts(n: int) -> list[tuple[str, str]]:
    convs = generate(max(1, n // 300 + 1), seed=3)
    out = [(who, text) for c in convs for _, who, text in c.turns]
    return out[:n]


async def bench_store(n: int) -> None:
    emb = LocalEmbedder()
    store = EdgeStore(Path(tempfile.mkdtemp(prefix="memstore-")) / "shard")
    await store.open(384)
    engine = Engine(store, emb, SparseEncoder(), Chunker(), ExtractiveSummarizer(), Caps(10**9, 1))
    texts = corpus_texts(n)
    items = [
        Incoming("bench", f"s{i // 50}", f"e{i}", Turn(role="user", content=t, speaker=w))
        for i, (w, t) in enumerate(texts)
    ]
    await engine.store_turns(items[:64])  # warm up
    t0 = time.perf_counter()
    for i in range(64, len(items), 64):
        await engine.store_turns(items[i : i + 64])
    dt = time.perf_counter() - t0
    words = np.mean([len(t.split()) for _, t in texts])
    print(
        f"store: {len(items) - 64} turns (mean {words:.0f} words) in {dt:.1f}s "
        f"= {(len(items) - 64) / dt:.0f} turns/s (local embedder, batches of 64)"
    )
    await store.close()


async def bench_search(n: int, queries: int) -> None:
    store = EdgeStore(Path(tempfile.mkdtemp(prefix="memsearch-")) / "shard")
    await store.open(384)
    engine = Engine(
        store, RandomVectors(), SparseEncoder(), Chunker(), ExtractiveSummarizer(), Caps(10**9, 1)
    )
    texts = corpus_texts(n)
    # sessions of 100 turns, users of 5 sessions, plus a few very long sessions
    sessions = []
    t0 = time.perf_counter()
    batch: list[Incoming] = []
    for i, (w, t) in enumerate(texts):
        sid = f"s{i // 100}" if i < n * 0.9 else f"long{i % 5}"
        uid = f"u{i // 500}"
        sessions.append((sid, uid))
        turn = Turn(role="user", content=t, speaker=w, created_at=float(i))
        batch.append(Incoming("bench", sid, f"e{i}", turn, uid))
        if len(batch) == 2000:
            await engine.store_turns(batch, enforce_caps=False)
            batch = []
    await engine.store_turns(batch, enforce_caps=False)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    await asyncio.to_thread(store._s().optimize)
    print(f"search: loaded {n} turns in {load:.1f}s, optimised in {time.perf_counter() - t0:.1f}s")

    rng = random.Random(5)
    qv = await RandomVectors(9).embed(["q"] * queries)
    for label, scope in (
        ("session (100 turns)", "session"),
        ("long session (2k)", "long"),
        ("user (5 sessions)", "user"),
    ):
        lat = []
        for j in range(-20, queries):  # the first 20 warm up
            sid, uid = sessions[rng.randrange(int(n * 0.9))]
            if scope == "long":
                sid = f"long{j % 5}"
            q = SearchMemory(
                tenant_id="bench",
                session_id=sid,
                user_id=uid,
                scope="user" if scope == "user" else "session",
                query=rng.choice(texts)[1],
                k=5,
                threshold=0.3,
            )
            t = time.perf_counter()
            await engine.search_vector(q, qv[j].tolist())
            if j >= 0:
                lat.append(time.perf_counter() - t)
        ms = np.array(lat) * 1000
        print(
            f"  hybrid search, {label:20s} p50 {np.percentile(ms, 50):.2f} ms  "
            f"p99 {np.percentile(ms, 99):.2f} ms  max {ms.max():.2f} ms"
        )
    await store.close()


def cpu_per_text(embed: Callable[[list[str]], Vectors], texts: list[str], batch: int) -> float:
    """CPU ms per text of embedding ``texts`` in batches of ``batch``."""
    embed(texts[:batch])  # warm up
    t0 = time.process_time()
    for i in range(0, len(texts), batch):
        embed(texts[i : i + batch])
    return 1000 * (time.process_time() - t0) / len(texts)


def bench_embedders(n: int) -> None:
    texts = [t for _, t in corpus_texts(n)]
    words = np.mean([len(t.split()) for t in texts])
    print(f"embedders: {len(texts)} turns (mean {words:.0f} words), CPU ms per text")
    cache = Path(os.environ.get("EMBED_CACHE_DIR") or tempfile.mkdtemp(prefix="embcache-"))
    t0, c0 = time.perf_counter(), time.process_time()
    static = StaticEmbedder.open(cache)
    print(
        f"  static table ready in {time.perf_counter() - t0:.1f}s "
        f"({time.process_time() - c0:.1f}s CPU; built unless cached in {cache})"
    )
    configs: list[tuple[str, Callable[[list[str]], Vectors]]] = [
        ("static, 256 dims", static.embed_sync),
        ("MiniLM, defaults (all cores, 256 tokens)", LocalEmbedder().embed_sync),
        ("MiniLM, 1 thread", LocalEmbedder(threads=1).embed_sync),
        ("MiniLM, 128 tokens", LocalEmbedder(max_tokens=128).embed_sync),
        ("MiniLM, 64 tokens", LocalEmbedder(max_tokens=64).embed_sync),
        ("MiniLM, memory arena on", LocalEmbedder(mem_arena=True).embed_sync),
        (
            "MiniLM int8 products (minilm-q8), 1 thread",
            LocalEmbedder(threads=1, model_path=quantized_model(cache)).embed_sync,
        ),
    ]
    for label, embed in configs:
        few = texts[: max(64, len(texts) // 8)] if label.startswith("MiniLM") else texts
        b64 = cpu_per_text(embed, few, 64)
        one = cpu_per_text(embed, few[:200], 1)
        print(f"  {label:42s} batches of 64: {b64:6.3f}   one text: {one:6.3f}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--turns", type=int, default=0)
    ap.add_argument("--embedders", action="store_true", help="only CPU per text of embedders")
    args = ap.parse_args()
    if args.embedders:
        bench_embedders(1000 if args.quick else 4000)
        return
    n = args.turns or (20_000 if args.quick else 100_000)
    print(f"cores: {os.cpu_count()}")
    await bench_store(500 if args.quick else 2000)
    await bench_search(n, 300 if args.quick else 1000)


if __name__ == "__main__":
    asyncio.run(main())
