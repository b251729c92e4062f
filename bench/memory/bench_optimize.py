"""CPU the embedded store spends per stored point: the upsert, and the segment optimiser.

    ./dev run python bench/memory/bench_optimize.py                      # 1536 dims, 100k points
    ./dev run python bench/memory/bench_optimize.py --every 20000        # optimise less often
    ./dev run python bench/memory/bench_optimize.py --dims 64 --segments 0

Writes points the way the memory service does (the service's shard layout and payload indexes,
batches of 512, real BM25 vectors and payloads, random unit vectors) and, every ``--every``
points, runs what its background optimiser runs (``optimize()`` then ``flush()``). Prints the
CPU of this process (the engine's threads included) per point for each part, the time of each
optimiser run with ``--trace``, and a filtered search's CPU at the end. ``--segments`` sets the
engine's target segment count (default: the service's, ``edge_layout.SEGMENTS``; 0: the
engine's own choice, one per core).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from chatbus_memory import edge_layout
from chatbus_memory.store import DENSE, SPARSE
from chatbus_memory.text import SparseEncoder


def shard_at(path: Path, dims: int, segments: int, segment_points: int) -> qe.EdgeShard:
    config = edge_layout.edge_config(dims)
    if segments != edge_layout.SEGMENTS or segment_points != edge_layout.SEGMENT_POINTS:
        cap = edge_layout.max_segment_kb(dims, segment_points) if segment_points else None
        config = qe.EdgeConfig(
            vectors=config.vectors,
            sparse_vectors=config.sparse_vectors,
            hnsw_config=config.hnsw_config,
            payload_memory=qe.Memory.Cold,
            optimizers=qe.EdgeOptimizersConfig(
                default_segment_number=segments or None, max_segment_size=cap
            ),
        )
    shard = qe.EdgeShard.create(str(path), config)
    for name, schema in edge_layout.payload_indexes().items():
        shard.update(qe.UpdateOperation.create_field_index(name, schema))
    return shard


def segments(shard: qe.EdgeShard) -> int:
    return int(shard.info().segments_count)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reads_ms(shard: qe.EdgeShard, dims: int, session: str) -> tuple[float, float]:
    """CPU ms of a search and of a newest-first scroll (history), both of one session."""
    only = qe.Filter(must=[qe.FieldCondition(key="session_id", match=qe.MatchValue(session))])
    query = [1.0 / dims**0.5] * dims
    started = time.process_time()
    for _ in range(20):
        shard.query(
            qe.QueryRequest(
                limit=50, query=qe.Query.Nearest(query, using=DENSE), filter=only,
                with_payload=True,
            )
        )  # fmt: skip
    search = time.process_time() - started
    started = time.process_time()
    for _ in range(20):
        shard.scroll(
            qe.ScrollRequest(
                limit=20, filter=only, with_payload=True,
                order_by=qe.OrderBy("created_at", qe.Direction.Desc),
            )
        )  # fmt: skip
    scroll = time.process_time() - started
    return search / 20 * 1000, scroll / 20 * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dims", type=int, default=1536)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=5000, help="points between optimiser runs")
    ap.add_argument("--segments", type=int, default=edge_layout.SEGMENTS)
    ap.add_argument(
        "--segment-points", type=int, default=edge_layout.SEGMENT_POINTS,
        help="most points in one merged segment (0: the engine's default cap)",
    )  # fmt: skip
    ap.add_argument("--trace", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chatbus-optimize-"))
    shard = shard_at(tmp / "shard", args.dims, args.segments, args.segment_points)
    sparse, rng = SparseEncoder(), np.random.default_rng(1)
    batches, since = args.points // 512, 0
    upsert_cpu = optimise_cpu = 0.0
    since_upsert = 0.0
    for b in range(batches):
        vectors = rng.random((512, args.dims), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        points = []
        for i, v in enumerate(vectors.tolist()):
            text = f"Hello, this is message {b * 512 + i} of this chat"
            sv = sparse.document(text)
            payload = {
                "tenant_id": "default", "session_id": f"s-{b}-{i // 2}",
                "turn_id": f"{uuid.uuid4().hex}:{i % 2}", "chunk": 0, "chunks": 1, "text": text,
                "role": "user", "created_at": 1e9 + b * 512 + i,
            }  # fmt: skip
            vector = {DENSE: v, SPARSE: qe.SparseVector(sv.indices, sv.values)}
            points.append(qe.Point(str(uuid.uuid4()), vector, payload))
        started = time.process_time()
        shard.update(qe.UpdateOperation.upsert_points(points))
        took = time.process_time() - started
        upsert_cpu += took
        since_upsert += took
        since += 512
        if since >= args.every:
            started = time.process_time()
            shard.optimize()
            shard.flush()
            took = time.process_time() - started
            optimise_cpu += took
            since_points, since = since, 0
            if args.trace:
                search_ms, scroll_ms = reads_ms(shard, args.dims, f"s-{b}-7")
                print(
                    f"  {(b + 1) * 512:>7} points: upsert {since_upsert / since_points * 1e6:.0f}"
                    f" µs/point, optimiser {took:.2f} s CPU, {segments(shard)} segments,"
                    f" RSS {rss_mib():,.0f} MiB; a session's search {search_ms:.2f} ms,"
                    f" newest-first scroll {scroll_ms:.2f} ms CPU", flush=True
                )  # fmt: skip
            since_upsert = 0.0
    n = batches * 512
    query = rng.random(args.dims, dtype=np.float32).tolist()
    only = qe.Filter(must=[qe.FieldCondition(key="session_id", match=qe.MatchValue("s-3-7"))])
    started = time.process_time()
    for _ in range(200):
        shard.query(
            qe.QueryRequest(
                limit=50, query=qe.Query.Nearest(query, using=DENSE), filter=only,
                with_payload=True,
            )
        )  # fmt: skip
    search_ms = (time.process_time() - started) / 200 * 1000
    print(
        f"{n:,} points of {args.dims} dims, optimiser every {args.every:,}, target segments "
        f"{args.segments or 'engine default'}: upsert {upsert_cpu / n * 1e6:.0f} µs/point, "
        f"optimiser {optimise_cpu / n * 1e6:.0f} µs/point; filtered search {search_ms:.2f} ms"
    )
    shard.close()
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
