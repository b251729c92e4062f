"""What the memory service keeps per session in its own process stays bounded.

The 30-minute soak stored ~1.5M turns of ~765k sessions (README "Performance"): anything kept
per session must have a bound, or the process grows with the number of sessions it has seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chatbus.contracts.chat import Turn
from chatbus_dev.offline_llm import hash_embedding
from chatbus_memory import engine as engine_module
from chatbus_memory.embedder import CachedEmbedder
from chatbus_memory.engine import Caps, Engine, Incoming
from chatbus_memory.store_edge import EdgeStore
from chatbus_memory.summarize import ExtractiveSummarizer
from chatbus_memory.text import Chunker, SparseEncoder

DIMS = 16


class HashVectors:
    """The offline model's bag-of-words vectors, in process."""

    model = "hash"
    dims = DIMS

    async def embed(self, texts: list[str]) -> np.ndarray:
        return np.array([hash_embedding(t, DIMS) for t in texts], dtype=np.float32)


def one_turn(session: str, i: int) -> Incoming:
    turn = Turn(role="user", content=f"message {i} of {session}", created_at=1000.0 + i)
    return Incoming("t", session, f"{session}-{i}", turn)


async def test_per_session_state_stays_bounded_over_many_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "CAP_TRACKED_SESSIONS", 50)
    store = EdgeStore(tmp_path / "shard")
    await store.open(DIMS)
    cache = CachedEmbedder(HashVectors(), max_entries=40)
    caps = Caps(session_cap=40, summary_batch=10)  # a session is counted every 2 of its turns
    engine = Engine(store, cache, SparseEncoder(), Chunker(), ExtractiveSummarizer(), caps)
    try:
        # one long session, its turns among those of 600 one-message sessions (as in the soak,
        # where every message was a new session)
        for n in range(60):
            batch = [one_turn(f"new-{n}-{k}", 0) for k in range(10)] + [one_turn("long", n)]
            await engine.store_turns(batch)
            assert engine.tracked_sessions() <= 50
            assert len(cache) <= 40
        assert engine.locked_sessions() == 0
        # the long session was still counted against its cap and summarised past it
        counts = await engine.counts("t", "long")
        assert counts["summaries"] >= 1
        assert counts["turns"] <= 40 + caps.check_every
    finally:
        await store.close()
