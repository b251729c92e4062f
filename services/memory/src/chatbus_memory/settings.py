"""The memory service's settings, read once in ``main()``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from chatbus.settings import ServiceSettings
from chatbus_memory.fusion import FusionParams


class MemorySettings(ServiceSettings):
    service_name: str = "memory"
    port: int = Field(default=8083, ge=0, le=65535)
    redis_prefix: str = "mem:"  # every Redis key of the memory service (it owns them)

    # Vector store: a Qdrant server when set, else the embedded engine under data_dir.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = "chatbus_memory"

    # Embeddings, offline: "minilm" (all-MiniLM-L6-v2 on onnxruntime as installed), "minilm-q8"
    # (the same model with int8 matrix products: half the CPU, same recall), "static" (token
    # vectors distilled from it: ~0.035 ms of CPU per text, lower recall); "local" is the default
    # offline one (``static_embedder.LOCAL_DEFAULT``: minilm-q8). Or an OpenAI-compatible API.
    embeddings: Literal["local", "static", "minilm", "minilm-q8", "openai"] = "local"
    # the static table: built from the installed MiniLM at first use, cached in this folder
    # (default: ``<data_dir>/memory/embedder``); dimensions after PCA
    embed_cache_dir: Path | None = None
    embed_static_dims: int = Field(default=256, ge=16, le=384)
    embedding_model: str = "text-embedding-3-small"
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    embed_batch: int = Field(default=32, ge=1, le=2048)
    # Threads for one local embedding batch (0: every core). 1 spends the least CPU per text
    # (MiniLM: ~20% less than 2 threads on 2 cores shared with the other services, which is
    # what the default stack is); more gives one large batch (an import) back sooner.
    embed_threads: int = Field(default=1, ge=0, le=256)
    # onnxruntime's memory arena: ~10% less CPU per text, but it keeps ~500 MiB after long texts
    embed_mem_arena: bool = False
    # Ask the API for shorter vectors (text-embedding-3 models take ``dimensions``); 0: native.
    embedding_dimensions: int = Field(default=0, ge=0, le=8192)
    # Embedding calls of concurrent messages merged into one; this many calls at once
    # (only for the API: the local model runs one batch at a time).
    embed_parallel: int = Field(default=4, ge=1, le=64)
    # Recent vectors kept in process (a searched message is stored without a second call).
    embed_cache_entries: int = Field(default=4096, ge=0)

    # Summaries of turns past the cap: by this model when an LLM endpoint or key is set.
    summary_model: str = "gpt-4o-mini"
    summary_llm: bool = True
    summary_timeout_s: float = 20.0

    # Caps and chunking.
    memory_session_cap: int = Field(default=2000, ge=2)
    memory_summary_batch: int = Field(default=100, ge=1)
    memory_chunk_tokens: int = Field(default=160, ge=32, le=256)
    memory_chunk_max_tokens: int = Field(default=200, ge=32, le=256)
    memory_consumer_batch: int = Field(default=256, ge=1, le=1024)
    memory_stream_max_age_s: float = Field(default=7 * 86400, gt=0)
    # Diagnosis: > 0 traces Python allocations (tracemalloc, slows the service) and logs the
    # traced total and the largest allocation sites every this many seconds.
    memory_heap_trace_s: float = Field(default=0.0, ge=0)

    # Recall: chosen on the tune split of the public set (bench/memory/train_rerank.py), checked
    # on the generated set (bench/memory/eval_recall.py).
    memory_threshold: float = 0.0
    memory_fusion: Literal["rrf", "convex"] = "convex"
    memory_rrf_k: float = 5.0
    memory_dense_weight: float = 1.0
    memory_sparse_weight: float = 1.0
    memory_alpha: float = 0.5
    memory_depth: int = Field(default=50, ge=1, le=1000)
    memory_lexical_pass: float = 0.67
    memory_idf_scoped: bool = True
    # the speaker's name (Turn.speaker) goes into the BM25 text and/or the embedded text
    memory_speaker_in_dense: bool = False
    memory_speaker_in_sparse: bool = True
    # the day a turn was said ("[8 May 2023] ...") in the BM25 text and/or the embedded text
    memory_date_in_dense: bool = False
    memory_date_in_sparse: bool = True
    # reorder the best fused candidates with the learned reranker (chatbus_memory.rerank)
    memory_rerank: bool = True
    memory_rerank_depth: int = Field(default=30, ge=2, le=200)
    # user profiles: facts read from user turns by offline patterns (default: no cost), by the
    # model ("model": one LLM call per first-person user turn; "auto": when one is configured)
    # or no profiles at all ("off")
    memory_profiles: Literal["auto", "model", "patterns", "off"] = "patterns"
    bm25_k: float = 1.2
    bm25_b: float = 0.75
    bm25_avg_len: float = 20.0

    def fusion(self) -> FusionParams:
        return FusionParams(
            method=self.memory_fusion,
            rrf_k=self.memory_rrf_k,
            dense_weight=self.memory_dense_weight,
            sparse_weight=self.memory_sparse_weight,
            alpha=self.memory_alpha,
            depth=self.memory_depth,
            lexical_pass=self.memory_lexical_pass,
            idf_scoped=self.memory_idf_scoped,
        )
