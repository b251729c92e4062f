"""Learn the memory service's reranker on the tune split of LoCoMo; report it on the test split.

    ./dev run python bench/memory/train_rerank.py            # fit, report, print the weights
    ./dev run python bench/memory/train_rerank.py --write    # also write them to the service

The conversations (``public_set.py``) are stored in the embedded store through the service's own
engine, with its settings (date and speaker in the indexed text, score fusion). For every
question the engine's fused top candidates become feature rows (``chatbus_memory.rerank``),
labelled by whether the turn is one of the question's evidence turns. A logistic regression is
fitted on conversations 1-4 only; recall@1/5/10 before and after reranking is printed for the
tune split and for the held-out test split (conversations 5-10), which never influences the fit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from eval_recall import Precomputed
from public_set import PublicConversation, load, split

from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import SearchMemory
from chatbus_memory.embedder import LocalEmbedder
from chatbus_memory.engine import Caps, Engine, Incoming
from chatbus_memory.fusion import Ranked, fuse
from chatbus_memory.rerank import FEATURES, QueryCues, Reranker, features, weights_path
from chatbus_memory.settings import MemorySettings
from chatbus_memory.store_edge import EdgeStore
from chatbus_memory.summarize import ExtractiveSummarizer
from chatbus_memory.text import Chunker, SparseEncoder

KS = (1, 5, 10)


async def build(convs: list[PublicConversation], emb: Precomputed, path: Path) -> Engine:
    s = MemorySettings(_env_file=None)  # type: ignore[call-arg]
    store = EdgeStore(path)
    await store.open(384)
    engine = Engine(
        store,
        emb,
        SparseEncoder(k=s.bm25_k, b=s.bm25_b, avg_len=s.bm25_avg_len),
        Chunker(s.memory_chunk_tokens, s.memory_chunk_max_tokens),
        ExtractiveSummarizer(),
        caps=Caps(1_000_000, 100),
        fusion=s.fusion(),
        threshold=0.0,
        speaker_in_dense=s.memory_speaker_in_dense,
        speaker_in_sparse=s.memory_speaker_in_sparse,
        date_in_dense=s.memory_date_in_dense,
        date_in_sparse=s.memory_date_in_sparse,
    )
    for c in convs:
        items = [
            Incoming(
                "eval",
                c.id,
                t.id,
                Turn(role="user", content=t.text, speaker=t.speaker, created_at=t.at + n),
            )
            for n, t in enumerate(c.turns)
        ]
        emb.warm([engine.dense_text(i.turn, i.turn.content) for i in items])
        for i in range(0, len(items), 512):
            await engine.store_turns(items[i : i + 512], enforce_caps=False)
    return engine


async def candidates(
    engine: Engine, convs: list[PublicConversation], emb: Precomputed, depth: int
) -> list[tuple[list[Ranked], str, tuple[str, ...]]]:
    """(fused top candidates, query, evidence ids) for every question."""
    out = []
    for c in convs:
        for q in c.questions:
            msg = SearchMemory(tenant_id="eval", session_id=c.id, query=q.text, k=10, threshold=0)
            sparse = engine.sparse.query(q.text)
            cands = await engine.store.candidates(
                engine.scope_of(msg),
                emb.known[q.text].tolist(),
                sparse,
                max(engine.fusion.depth, depth),
                idf_scoped=engine.fusion.idf_scoped,
            )
            ranked = fuse(cands, sparse.indices, engine.fusion)[:depth]
            out.append((ranked, q.text, q.evidence))
    return out


def recall(rows: list[tuple[list[Ranked], str, tuple[str, ...]]], rr: Reranker | None) -> str:
    found = dict.fromkeys(KS, 0)
    for ranked, query, evidence in rows:
        order = rr.rerank(ranked, query) if rr else ranked
        ids = [str(r.payload.get("turn_id")) for r in order]
        for k in KS:
            found[k] += any(e in ids[:k] for e in evidence)
    top = sum(any(str(r.payload.get("turn_id")) in ev for r in ranked) for ranked, _, ev in rows)
    cells = "  ".join(f"R@{k} {found[k] / len(rows):.3f}" for k in KS)
    return f"{cells}  (an evidence turn in the top {len(rows[0][0])}: {top / len(rows):.3f})"


def fit(
    rows: list[tuple[list[Ranked], str, tuple[str, ...]]], l2: float
) -> tuple[np.ndarray, float]:
    """Listwise: a softmax over each question's candidates should put its mass on evidence.

    Minimises the negative log of the probability given to the evidence turns, plus an L2
    penalty, by plain gradient descent (the problem is convex and small)."""
    groups = []
    for ranked, query, evidence in rows:
        labels = np.array([str(r.payload.get("turn_id")) in evidence for r in ranked], float)
        if not labels.any():
            continue  # nothing to learn from a question whose evidence is not a candidate
        groups.append((np.asarray(features(ranked, QueryCues.of(query))), labels))
    x_all = np.vstack([g[0] for g in groups])
    mean, std = x_all.mean(0), x_all.std(0) + 1e-9
    w = np.zeros(x_all.shape[1])
    lr = 0.5
    for _ in range(600):
        grad = l2 * w
        for x, y in groups:
            z = ((x - mean) / std) @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            q = y / y.sum()
            grad += ((x - mean) / std).T @ (p - q) / len(groups)
        w -= lr * grad
    weights = w / std
    return weights, float(-(mean / std) @ w)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="write the weights into the service")
    ap.add_argument("--depth", type=int, default=30)
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--cache", type=Path, default=None, help="a file to keep embeddings in")
    args = ap.parse_args()

    convs = load()
    tune, test = split(convs)
    emb = Precomputed(LocalEmbedder())
    if args.cache and args.cache.exists():
        emb.known = np.load(args.cache, allow_pickle=True).item()
    t0 = time.perf_counter()
    emb.warm([q.text for c in convs for q in c.questions])
    engine = await build(convs, emb, Path(tempfile.mkdtemp(prefix="rerank-")) / "store")
    if args.cache:
        np.save(args.cache, emb.known, allow_pickle=True)  # type: ignore[arg-type]
    print(f"stored {sum(len(c.turns) for c in convs)} turns in {time.perf_counter() - t0:.0f}s")
    rows_tune = await candidates(engine, tune, emb, args.depth)
    rows_test = await candidates(engine, test, emb, args.depth)
    await engine.store.close()

    weights, bias = fit(rows_tune, args.l2)
    rr = Reranker(tuple(float(w) for w in weights), bias, args.depth)
    print(f"tune ({len(rows_tune)} questions, fitted on):")
    print(f"  fused     {recall(rows_tune, None)}")
    print(f"  reranked  {recall(rows_tune, rr)}")
    print(f"test ({len(rows_test)} questions, held out):")
    print(f"  fused     {recall(rows_test, None)}")
    print(f"  reranked  {recall(rows_test, rr)}")
    print("weights:", ", ".join(f"{n} {w:+.3f}" for n, w in zip(FEATURES, weights, strict=True)))
    if args.write:
        doc = {
            "features": list(FEATURES),
            "weights": [round(float(w), 6) for w in weights],
            "bias": round(bias, 6),
            "trained_on": "LoCoMo conversations 1-4 (bench/memory/public_set.py split), "
            f"top {args.depth} fused candidates, l2 {args.l2}",
        }
        weights_path().write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {weights_path()}")


if __name__ == "__main__":
    asyncio.run(main())
