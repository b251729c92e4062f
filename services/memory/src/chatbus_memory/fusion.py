"""Hybrid ranking: dense (cosine) and BM25 candidate lists fused into one.

Two fusions are available: weighted reciprocal-rank fusion, and a convex combination of the
normalised scores. Both are tuned on ``bench/memory/eval_recall.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from chatbus_memory.store import Candidates


@dataclass(frozen=True)
class FusionParams:
    method: Literal["rrf", "convex"] = "rrf"
    rrf_k: float = 5.0
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    # convex: score = alpha * cosine + (1 - alpha) * bm25, each min-max rescaled to 0-1
    alpha: float = 0.5
    # candidates fetched from each list
    depth: int = 50
    # a turn covering this share of the query's BM25 terms passes the similarity threshold
    lexical_pass: float = 0.67
    # BM25 IDF over the searched session (or user) only, instead of the whole collection
    idf_scoped: bool = True


@dataclass
class Ranked:
    id: str
    payload: dict[str, Any]
    score: float
    similarity: float
    coverage: float
    # BM25 score rescaled to 0-1 over the candidates (0 when not a BM25 candidate)
    lexical: float = 0.0


def fuse(cands: Candidates, query_terms: list[int], params: FusionParams) -> list[Ranked]:
    """Every candidate once, best first, with its fused score, cosine and term coverage."""
    cos: dict[str, float] = dict(cands.cosine)
    for h in cands.dense:
        cos[h.id] = h.score
    out: dict[str, Ranked] = {}
    for h in (*cands.dense, *cands.sparse):
        if h.id not in out:
            out[h.id] = Ranked(h.id, h.payload, 0.0, cos.get(h.id, 0.0), 0.0)
    terms = set(query_terms)
    bm_lo, bm_span = _span([h.score for h in cands.sparse])
    for h in cands.sparse:
        r = out[h.id]
        r.lexical = _unit(h.score, bm_lo, bm_span)
        if terms and h.sparse_indices is not None:
            r.coverage = len(terms.intersection(h.sparse_indices)) / len(terms)
    if params.method == "rrf":
        for rank, h in enumerate(cands.dense):
            out[h.id].score += params.dense_weight / (params.rrf_k + rank + 1)
        for rank, h in enumerate(cands.sparse):
            out[h.id].score += params.sparse_weight / (params.rrf_k + rank + 1)
    else:
        # each score rescaled to 0-1 over the candidates, so neither dominates by its scale
        cos_lo, cos_span = _span([r.similarity for r in out.values()])
        for r in out.values():
            dense = _unit(r.similarity, cos_lo, cos_span) if cands.dense else 0.0
            r.score = params.alpha * dense + (1 - params.alpha) * r.lexical
    return sorted(out.values(), key=lambda r: r.score, reverse=True)


def _span(scores: list[float]) -> tuple[float, float]:
    """(lowest, highest - lowest) of a candidate list: the lowest maps to 0, the highest to 1."""
    if not scores:
        return 0.0, 0.0
    lo = min(scores)
    return lo, max(scores) - lo


def _unit(x: float, lo: float, span: float) -> float:
    return (x - lo) / span if span > 0 else 1.0


def passes(r: Ranked, threshold: float, params: FusionParams, *, dense_used: bool) -> bool:
    if threshold <= 0 or not dense_used:
        return True
    return r.similarity >= threshold or r.coverage >= params.lexical_pass
