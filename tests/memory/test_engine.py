"""The engine on both vector stores (embedded qdrant-edge, qdrant-client local mode), no bus."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from qdrant_client import AsyncQdrantClient

from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import SearchMemory
from chatbus_dev.offline_llm import OfflineLLM, hash_embedding
from chatbus_memory.embed_queue import BatchingEmbedder
from chatbus_memory.embedder import CachedEmbedder, LocalEmbedder, OpenAIEmbedder
from chatbus_memory.engine import Caps, Engine, Incoming
from chatbus_memory.store import VectorStore, where
from chatbus_memory.store_edge import EdgeStore
from chatbus_memory.store_qdrant import QdrantStore
from chatbus_memory.summarize import ExtractiveSummarizer
from chatbus_memory.text import Chunker, SparseEncoder


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest_asyncio.fixture(params=["edge", "qdrant-local"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s: VectorStore
    if request.param == "edge":
        s = EdgeStore(tmp_path / "shard")
    else:
        s = QdrantStore(AsyncQdrantClient(location=":memory:"), "memory_test")
    await s.open(384)
    yield s
    await s.close()


@pytest.fixture
def engine(store: VectorStore, embedder: LocalEmbedder) -> Engine:
    return Engine(
        store, embedder, SparseEncoder(), Chunker(), ExtractiveSummarizer(), caps=Caps(20, 5)
    )


def turns(*texts: str, t0: float = 1000.0) -> list[Turn]:
    return [
        Turn(role="user" if i % 2 == 0 else "assistant", content=t, created_at=t0 + i)
        for i, t in enumerate(texts)
    ]


def items(tenant: str, session: str, ts: list[Turn], user: str | None = None) -> list[Incoming]:
    return [Incoming(tenant, session, f"{session}-{i}", t, user) for i, t in enumerate(ts)]


async def test_hybrid_finds_facts_and_respects_scope(engine: Engine) -> None:
    ts = turns(
        "Hi, my order number is 4471.",
        "Thanks, noted.",
        "My dog is called Biscuit.",
        "Cute name!",
        "The weather has been awful lately.",
    )
    await engine.store_turns(items("t1", "s1", ts, "u1"))
    await engine.store_turns(items("t2", "s1", turns("My order number is 1234."), "u1"))
    q = SearchMemory(tenant_id="t1", session_id="s1", query="what was my order number?", k=5)
    hits = await engine.search(q)
    assert hits[0].turn.content == "Hi, my order number is 4471."
    assert all("1234" not in h.turn.content for h in hits)
    # the threshold keeps unrelated turns out; 0 returns the best k whatever they are
    assert len(hits) < 5
    assert len(await engine.search(q.model_copy(update={"threshold": 0.0}))) == 5
    for mode in ("dense", "bm25"):
        only = await engine.search(q.model_copy(update={"mode": mode}))
        assert only[0].turn.content == "Hi, my order number is 4471."


async def test_same_turn_twice_is_stored_once(engine: Engine, store: VectorStore) -> None:
    batch = items("t", "s", turns("one", "two", "three"))
    await engine.store_turns(batch)
    await engine.store_turns(batch[1:])
    assert await store.count(where("t", session_id="s")) == 3


async def test_history_order_and_before(engine: Engine) -> None:
    await engine.store_turns(items("t", "s", turns(*[f"turn {i}" for i in range(8)])))
    last = await engine.history("t", "s", 3)
    assert [t.content for t in last] == ["turn 5", "turn 6", "turn 7"]
    earlier = await engine.history("t", "s", 2, before=last[0].created_at)
    assert [t.content for t in earlier] == ["turn 3", "turn 4"]
    assert await engine.history("t", "other", 3) == []


async def test_paging_back_holds_while_the_shard_optimises(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    """Paging back with ``before`` never repeats the boundary turn, even mid-optimisation."""
    store = EdgeStore(tmp_path / "shard")
    await store.open(384)
    engine = Engine(store, embedder, SparseEncoder(), Chunker(), ExtractiveSummarizer())
    stop = threading.Event()

    def optimise() -> None:
        while not stop.is_set():
            store._s().optimize()

    worker = threading.Thread(target=optimise)
    worker.start()
    try:
        for n in range(60):
            session = f"s{n}"
            ts = turns(*[f"turn {i}" for i in range(10)], t0=time.time())
            await engine.store_turns(items("t", session, ts))
            last = await engine.history("t", session, 3)
            earlier = await engine.history("t", session, 50, before=last[0].created_at)
            assert [t.content for t in earlier] == [f"turn {i}" for i in range(7)]
    finally:
        stop.set()
        worker.join()
        await store.close()


async def test_cap_summarises_oldest_turns(engine: Engine) -> None:
    ts = turns(*[f"fact {i}: my favourite number is {i * 7}." for i in range(23)])
    await engine.store_turns(items("t", "s", ts))
    counts = await engine.counts("t", "s")
    assert counts == {"points": 19, "turns": 18, "summaries": 1}
    history = await engine.history("t", "s", 100)
    assert history[0].role == "summary"
    assert "fact 0: my favourite number is 0." in history[0].content
    assert history[1].content == "fact 5: my favourite number is 35."


async def test_long_turn_is_chunked_and_a_hit_returns_the_chunk(engine: Engine) -> None:
    long = " ".join(f"Line {i} is about gardening and tomatoes." for i in range(100))
    long += " The wifi password is LIMA-88."
    await engine.store_turns(items("t", "s", turns(long)))
    counts = await engine.counts("t", "s")
    assert counts["points"] > 3 and counts["turns"] == 1
    q = SearchMemory(tenant_id="t", session_id="s", query="what is the wifi password", k=3)
    hit = (await engine.search(q))[0]
    assert "LIMA-88" in hit.turn.content and len(hit.turn.content) < len(long) / 3
    assert (await engine.history("t", "s", 1))[0].content == long


async def test_user_scope_spans_sessions_of_that_user_only(engine: Engine) -> None:
    await engine.store_turns(items("t", "a1", turns("I drive a green van."), "alice"))
    await engine.store_turns(items("t", "a2", turns("Hello again."), "alice"))
    await engine.store_turns(items("t", "b1", turns("I drive a red car."), "bob"))
    q = SearchMemory(
        tenant_id="t", session_id="a2", user_id="alice", scope="user", query="what do I drive"
    )
    found = [h.turn.content for h in await engine.search(q)]
    assert "I drive a green van." in found and "I drive a red car." not in found


def test_chunker_keeps_short_texts_whole_and_splits_long_ones() -> None:
    c = Chunker(160, 200)
    assert c.split("short text") == ["short text"]
    long = " ".join(["word"] * 2000)  # one huge sentence
    parts = c.split(long)
    assert len(parts) > 5
    n = [len(c.tokenizer.encode(p, add_special_tokens=False).ids) for p in parts]
    assert max(n) <= 200
    assert " ".join(parts).split() == long.split()


async def test_openai_embedder_reads_base64_vectors_and_caches_recent_texts(
    fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    state, url = fake_llm
    inner = OpenAIEmbedder(model=f"m-{uid}", dims=0, base_url=url, api_key="k")
    assert await inner.probe() == state.dims
    cached = CachedEmbedder(inner)
    a = await cached.embed(["alpha", "beta", "alpha"])
    assert state.last_embedding_request["encoding_format"] == "base64"
    assert state.last_embedding_request["input"] == ["alpha", "beta"]  # each text once
    expected = np.array([hash_embedding(t, state.dims) for t in ("alpha", "beta")], np.float32)
    assert np.allclose(a[:2], expected, atol=1e-6)
    calls = state.embedding_calls
    b = await cached.embed(["beta", "alpha"])
    assert state.embedding_calls == calls  # all from the cache
    assert np.allclose(a[[1, 0]], b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)
    await cached.forget(["alpha"])
    await cached.embed(["alpha"])
    assert state.embedding_calls == calls + 1  # forgotten: embedded again
    # an endpoint answering float lists (no base64) gives the same vectors
    inner.base64 = False
    assert np.allclose(await inner.embed(["alpha", "beta"]), expected, atol=1e-6)
    assert "encoding_format" not in state.last_embedding_request
    await inner.close()


async def test_concurrent_embeddings_are_merged_into_one_call(
    fake_llm: tuple[OfflineLLM, str], uid: str
) -> None:
    state, url = fake_llm
    inner = OpenAIEmbedder(model=f"m-{uid}", dims=0, base_url=url, api_key="k")
    await inner.probe()
    batching = BatchingEmbedder(inner, max_batch=256, parallel=1)
    calls = state.embedding_calls
    texts = [f"message number {i}" for i in range(40)]
    out = await asyncio.gather(*(batching.embed([t]) for t in texts))
    assert state.embedding_calls - calls <= 2  # 40 callers, one or two HTTP calls
    expected = np.array([hash_embedding(t, state.dims) for t in texts], np.float32)
    assert np.allclose(np.concatenate(out), expected, atol=1e-6)
    await inner.close()


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_works() -> None:
    class Flaky:
        model, dims = "flaky", 4
        fail = True

        async def embed(self, texts: list[str]) -> np.ndarray:
            if self.fail:
                self.fail = False
                raise RuntimeError("endpoint down")
            return np.ones((len(texts), 4), dtype=np.float32)

    batching = BatchingEmbedder(Flaky(), parallel=1)
    # the five callers queue before the worker runs: one call, which fails for all of them
    first = await asyncio.gather(
        *(batching.embed([f"t{i}"]) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) and str(r) == "endpoint down" for r in first)
    again = await batching.embed(["later"])
    assert again.shape == (1, 4)
