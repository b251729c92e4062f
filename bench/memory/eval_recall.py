"""Evidence recall@1/5/10 of the memory service's search: dense, BM25 and hybrid.

    ./dev run python bench/memory/eval_recall.py            # 40 conversations x 300 turns
    ./dev run python bench/memory/eval_recall.py --quick    # 8 conversations
    ./dev run python bench/memory/eval_recall.py --grid     # also tune the fusion
    ./dev run python bench/memory/eval_recall.py --embedder static   # minilm (default), minilm-q8
    ./dev run python bench/memory/eval_recall.py --no-dense-second   # lever: 2nd speaker unembedded
    LOCOMO_PATH=... ./dev run python bench/memory/eval_recall.py --locomo-lever  # same, on LoCoMo

Each conversation (see ``conversations.py``) is stored as one session, with speaker names, in the
embedded store through the service's own engine (same chunking, BM25 and fusion code). Every
question has exactly one evidence turn; recall@k is the share of questions whose evidence turn is
among the first k results of a search scoped to that session (threshold 0).

``--no-dense-second`` stores the second speaker's turns (standing for an assistant's) with a
random unit vector instead of their embedding, as if only user turns were embedded: BM25 still
indexes them; recall is then also reported for the questions whose evidence they hold.
``--locomo-lever`` measures that on LoCoMo (in process, the service's engine and defaults, each
turn at its session's date), with and without the second speaker's vectors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from conversations import Conversation, generate

from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import SearchMemory
from chatbus_memory.embedder import LocalEmbedder, Vectors
from chatbus_memory.engine import Caps, Engine, Incoming
from chatbus_memory.fusion import FusionParams
from chatbus_memory.rerank import Reranker
from chatbus_memory.settings import MemorySettings
from chatbus_memory.static_embedder import StaticEmbedder, offline_embedder
from chatbus_memory.store_edge import EdgeStore
from chatbus_memory.summarize import ExtractiveSummarizer
from chatbus_memory.text import Chunker, SparseEncoder

KS = (1, 5, 10)


class SyncEmbedder(Protocol):
    model: str
    dims: int

    def embed_sync(self, texts: list[str]) -> Vectors: ...


def offline(name: str, cache: Path) -> SyncEmbedder:
    """The offline embedder of that name (the static one's table cached in ``cache``)."""
    settings = MemorySettings(embeddings=name, embed_cache_dir=cache, _env_file=None)  # type: ignore[call-arg]
    emb = offline_embedder(settings)
    assert isinstance(emb, StaticEmbedder | LocalEmbedder)
    return emb


class Precomputed:
    """An embedder that serves vectors computed once for the whole run.

    Texts in ``unembedded`` get a random unit vector instead (no dense signal).
    """

    def __init__(self, inner: SyncEmbedder) -> None:
        self.inner = inner
        self.model = inner.model
        self.dims = inner.dims
        self.known: dict[str, np.ndarray] = {}
        self.unembedded: set[str] = set()
        self.rng = np.random.default_rng(5)

    def warm(self, texts: list[str]) -> None:
        todo = sorted({t for t in texts if t not in self.known})
        for t, v in zip(todo, self.inner.embed_sync(todo), strict=True):
            self.known[t] = v

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.warm(texts)
        return np.stack([self.noise() if t in self.unembedded else self.known[t] for t in texts])

    def noise(self) -> np.ndarray:
        v = self.rng.standard_normal(self.dims).astype(np.float32)
        return v / np.linalg.norm(v)


async def build(
    convs: list[Conversation],
    emb: Precomputed,
    settings: MemorySettings,
    path: Path,
    speaker: tuple[bool, bool] | None = None,
    times: dict[str, float] | None = None,
) -> Engine:
    in_dense, in_sparse = speaker or (
        settings.memory_speaker_in_dense,
        settings.memory_speaker_in_sparse,
    )
    store = EdgeStore(path)
    await store.open(emb.dims)
    engine = Engine(
        store,
        emb,
        SparseEncoder(k=settings.bm25_k, b=settings.bm25_b, avg_len=settings.bm25_avg_len),
        Chunker(settings.memory_chunk_tokens, settings.memory_chunk_max_tokens),
        ExtractiveSummarizer(),
        caps=Caps(100_000, 100),
        fusion=settings.fusion(),
        threshold=0.0,
        speaker_in_dense=in_dense,
        speaker_in_sparse=in_sparse,
        date_in_dense=settings.memory_date_in_dense,
        date_in_sparse=settings.memory_date_in_sparse,
        reranker=Reranker.load(depth=settings.memory_rerank_depth)
        if settings.memory_rerank
        else None,
    )
    for conv in convs:
        items = [
            Incoming(
                "eval",
                conv.id,
                tid,
                Turn(
                    role="user",
                    content=text,
                    speaker=who,
                    created_at=times[tid] if times else 1000.0 + n,
                ),
            )
            for n, (tid, who, text) in enumerate(conv.turns)
        ]
        for i in range(0, len(items), 256):
            await engine.store_turns(items[i : i + 256], enforce_caps=False)
    return engine


async def evaluate(
    engine: Engine,
    convs: list[Conversation],
    emb: Precomputed,
    mode: str,
    only: set[str] | None = None,
) -> dict[int, float]:
    """Recall at each k (of the questions whose evidence turn is in ``only``, if given)."""
    found = dict.fromkeys(KS, 0)
    total = 0
    for conv in convs:
        for q in conv.questions:
            if only is not None and q.evidence not in only:
                continue
            msg = SearchMemory(
                tenant_id="eval",
                session_id=conv.id,
                query=q.text,
                k=max(KS),
                threshold=0.0,
                mode=mode,
            )  # type: ignore[arg-type]
            vec = None if mode == "bm25" else emb.known[q.text].tolist()
            hits = await engine.search_vector(msg, vec)
            ids = [h.turn_id for h in hits]
            total += 1
            for k in KS:
                found[k] += q.evidence in ids[:k]
    return {k: found[k] / total for k in KS}


async def locomo_lever(embedder: str, tmp: Path) -> None:
    """LoCoMo hybrid recall with every turn embedded, then without the second speaker's vectors."""
    from public_set import load

    public = load()
    convs = [
        Conversation(c.id, c.speakers, [(t.id, t.speaker, t.text) for t in c.turns]) for c in public
    ]
    times = {f"{c.id}/{t.id}": t.at + n for c in public for n, t in enumerate(c.turns)}
    for c in convs:  # turn ids are per conversation in LoCoMo ("D3:12")
        c.turns = [(f"{c.id}/{tid}", who, text) for tid, who, text in c.turns]
    settings = MemorySettings(_env_file=None)  # type: ignore[call-arg]
    emb = Precomputed(offline(embedder, tmp / "embedder"))
    t0 = time.perf_counter()
    emb.warm([text for c in convs for _, _, text in c.turns])
    emb.warm([q.text for c in public for q in c.questions])
    print(f"LoCoMo: embedded {len(emb.known)} texts in {time.perf_counter() - t0:.1f}s")
    second = {tid for c in convs for tid, who, _ in c.turns if who == c.speakers[1]}
    firsts = {text for c in convs for tid, _, text in c.turns if tid not in second}
    for label, unembedded in (
        ("every turn embedded", set()),
        (
            "second speaker's turns unembedded",
            {t for c in convs for tid, _, t in c.turns if tid in second} - firsts,
        ),
    ):
        emb.unembedded = unembedded
        engine = await build(convs, emb, settings, tmp / label.replace(" ", "_"), times=times)
        found: dict[str, dict[int, int]] = {"all": dict.fromkeys(KS, 0), "in": dict.fromkeys(KS, 0)}
        total = {"all": 0, "in": 0}
        for c in public:
            for q in c.questions:
                msg = SearchMemory(
                    tenant_id="eval", session_id=c.id, query=q.text, k=max(KS), threshold=0.0
                )
                hits = await engine.search_vector(msg, emb.known[q.text].tolist())
                ids = [h.turn_id for h in hits]
                evidence = [f"{c.id}/{e}" for e in q.evidence]
                groups = ["all"] + (["in"] if all(e in second for e in evidence) else [])
                for g in groups:
                    total[g] += 1
                    for k in KS:
                        found[g][k] += any(e in ids[:k] for e in evidence)
        await engine.store.close()
        for g, name in (("all", "all questions"), ("in", "evidence only in 2nd speaker's turns")):
            r = {k: found[g][k] / max(1, total[g]) for k in KS}
            print(f"  {label:36s} {name:38s} {fmt(r)}  ({total[g]})")


def fmt(r: dict[int, float]) -> str:
    return "  ".join(f"R@{k} {100 * r[k]:5.1f}%" for k in KS)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--conversations", type=int, default=0)
    ap.add_argument("--grid", action="store_true", help="try fusion and BM25 settings")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--embedder", choices=["minilm", "minilm-q8", "static"], default="minilm")
    ap.add_argument(
        "--no-dense-second",
        action="store_true",
        help="the second speaker's turns get no embedding (stand-ins for assistant turns)",
    )
    ap.add_argument("--locomo-lever", action="store_true", help="--no-dense-second on LoCoMo")
    args = ap.parse_args()
    if args.locomo_lever:
        await locomo_lever(args.embedder, Path(tempfile.mkdtemp(prefix="memeval-")))
        return
    n = args.conversations or (8 if args.quick else 40)
    convs = generate(n, seed=args.seed)
    questions = sum(len(c.questions) for c in convs)
    turns = sum(len(c.turns) for c in convs)
    print(f"{n} conversations, {turns} turns, {questions} questions")

    settings = MemorySettings(_env_file=None)  # type: ignore[call-arg]
    tmp = Path(tempfile.mkdtemp(prefix="memeval-"))
    t0 = time.perf_counter()
    emb = Precomputed(offline(args.embedder, tmp / "embedder"))
    print(f"embedder {emb.model} ({emb.dims} dims), ready in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    texts = [f"{who}: {text}" for c in convs for _, who, text in c.turns]
    texts += [text for c in convs for _, _, text in c.turns]
    emb.warm(texts + [q.text for c in convs for q in c.questions])
    print(f"embedded {len(emb.known)} texts in {time.perf_counter() - t0:.1f}s")
    second: set[str] | None = None
    if args.no_dense_second:
        second = {tid for c in convs for tid, who, _ in c.turns if who == c.speakers[1]}
        # the texts the service embeds (speaker and date left out by default); a text both
        # speakers said keeps its vector
        firsts = {text for c in convs for tid, _, text in c.turns if tid not in second}
        emb.unembedded = {t for c in convs for tid, _, t in c.turns if tid in second} - firsts

    engine = await build(convs, emb, settings, tmp / "default")
    default = settings.fusion()
    print(
        f"\nwith the service defaults ({default.method}, k={default.rrf_k}, "
        f"w={default.dense_weight}/{default.sparse_weight}, depth={default.depth}):"
    )
    for mode in ("dense", "bm25", "hybrid"):
        print(f"  {mode:7s} {fmt(await evaluate(engine, convs, emb, mode))}")
    if second is not None:
        hybrid = await evaluate(engine, convs, emb, "hybrid", only=second)
        print(f"  hybrid, evidence in an unembedded turn: {fmt(hybrid)}")
    engine.fusion = replace(default, idf_scoped=not default.idf_scoped)
    print(
        f"  bm25 with idf_scoped={not default.idf_scoped}: "
        f"{fmt(await evaluate(engine, convs, emb, 'bm25'))}"
    )
    engine.fusion = default

    if args.grid:
        print("\nfusion grid (hybrid):")
        grid: list[FusionParams] = []
        for k in (2, 5, 10, 20, 60):
            for wd, ws in ((1, 1), (1, 1.5), (1, 2), (1.5, 1), (2, 1)):
                grid.append(
                    replace(default, method="rrf", rrf_k=k, dense_weight=wd, sparse_weight=ws)
                )
        for alpha in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            grid.append(replace(default, method="convex", alpha=alpha))
        results = []
        for p in grid:
            engine.fusion = p
            r = await evaluate(engine, convs, emb, "hybrid")
            results.append((r[5], r, p))
        for _, r, p in sorted(results, key=lambda x: x[0], reverse=True)[:12]:
            desc = (
                f"rrf k={p.rrf_k:g} w={p.dense_weight:g}/{p.sparse_weight:g}"
                if p.method == "rrf"
                else f"convex alpha={p.alpha:g}"
            )
            print(f"  {desc:28s} {fmt(r)}")
        await engine.store.close()
        print("\nBM25 and speaker-name variants (service default fusion):")
        variants = [
            (20, 0.75, (False, False)),
            (20, 0.75, (True, True)),
            (20, 0.75, (True, False)),
            (10, 0.75, (False, True)),
            (40, 0.75, (False, True)),
            (20, 0.5, (False, True)),
            (20, 0.9, (False, True)),
        ]
        for avg_len, b, speaker in variants:
            s = settings.model_copy(update={"bm25_avg_len": avg_len, "bm25_b": b})
            name = f"avg_len={avg_len} b={b} speaker(dense,bm25)={speaker}"
            eng = await build(convs, emb, s, tmp / name.replace(" ", "_"), speaker)
            rs = [await evaluate(eng, convs, emb, m) for m in ("bm25", "hybrid")]
            print(f"  {name:50s} bm25 {fmt(rs[0])} | hybrid {fmt(rs[1])}")
            await eng.store.close()


if __name__ == "__main__":
    asyncio.run(main())
