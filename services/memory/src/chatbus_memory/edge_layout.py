"""How the embedded store lays out its shard: vectors, indexes, memory placement.

Chosen for the memory service's searches, which are always filtered to one session or one user,
and for a process whose RSS must not grow with the number of stored turns.
"""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe

from chatbus_memory.store import DENSE, KEYWORD_FIELDS, SPARSE

SEGMENTS = 8  # the optimiser's target number of segments (see edge_config)
SEGMENT_POINTS = 100_000  # the most points the optimiser merges into one segment (see edge_config)


def max_segment_kb(dims: int, points: int = SEGMENT_POINTS) -> int:
    """The engine's segment size cap (KB of dense vectors) that holds ``points`` points."""
    return max(1, points * dims * 4 // 1024)


def edge_config(dims: int) -> qe.EdgeConfig:
    """The shard's layout: bounded RAM, and no vector graph to build.

    Every search is filtered to one session or one user, a few thousand points at most, which
    the payload index finds and the engine scores exactly; a global HNSW graph would never be
    used, yet building it cost ~2 ms of CPU per stored 1536-dimension vector. So ``m=0`` (no
    graph, nor per-tenant ones). Dense vectors and payloads live in memory-mapped files
    (``Memory.Cold``: read from the page cache when touched, not held on the heap), so the
    process's RSS does not grow with the number of stored turns; the sparse (BM25) index and the
    point id tracker of merged segments too (in RAM, the engine's default, it held ~7 MiB of heap
    per 100k points: ``bench/memory/bench_rss.py --dims 64 --session-turns 2``).

    :data:`SEGMENTS` segments, not the engine's default of one per core: with two, every
    optimiser run (each 5,000 stored points) merged the new points into the one large segment,
    rewriting all of it — ~330 µs of CPU per stored 1536-dim point at 100k points, growing with
    the store; with eight, ~100 µs, for ~0.03 ms more per filtered search
    (``bench/memory/bench_optimize.py``).

    And no segment larger than :data:`SEGMENT_POINTS` points: without a cap (the engine's
    default is sized for HNSW-indexed collections, millions of small vectors), once there are
    eight segments every merge rewrites one of them, and they grow with the store — at 64 dims
    a merge every ~41k points cost 0.8 s of CPU up to 290k points, 1.5 s from 330k, 3-4 s
    from 610k to 1M, so the cost per stored point grew without bound (the 30-minute
    soak in README "Performance"). With the cap, the optimiser merges only segments that
    together stay under it, each point is rewritten a bounded number of times, and past
    ``8 * SEGMENT_POINTS`` points the segment count grows instead (a filtered search looks
    each segment's payload index up: 13 segments at 1M points, no cost measurable above noise).
    """
    return qe.EdgeConfig(
        vectors={
            DENSE: qe.EdgeVectorParams(
                size=dims, distance=qe.Distance.Cosine, memory=qe.Memory.Cold
            )
        },
        sparse_vectors={
            SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, memory=qe.Memory.Cold)
        },
        hnsw_config=qe.HnswIndexConfig(
            m=0, ef_construct=100, full_scan_threshold=10_000, payload_m=0
        ),
        payload_memory=qe.Memory.Cold,
        id_tracker_memory=qe.Memory.Cold,
        optimizers=qe.EdgeOptimizersConfig(
            default_segment_number=SEGMENTS, max_segment_size=max_segment_kb(dims)
        ),
    )


def payload_indexes() -> dict[str, Any]:
    """The payload fields indexed (memory-mapped too), by name."""
    cold = qe.Memory.Cold
    # no index on turn_id (unique per turn, the largest index in RAM): it is only matched
    # together with a session, whose index narrows the scan to that session's points
    keywords = [k for k in KEYWORD_FIELDS if k != "turn_id"]
    wanted: dict[str, Any] = {k: qe.KeywordIndexParams(memory=cold) for k in keywords}
    wanted["tenant_id"] = qe.KeywordIndexParams(is_tenant=True, memory=cold)
    wanted["chunk"] = qe.IntegerIndexParams(lookup=True, range=False, memory=cold)
    wanted["created_at"] = qe.FloatIndexParams(memory=cold)
    return wanted
