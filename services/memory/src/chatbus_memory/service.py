"""Wiring: settings -> embedder, vector store, engine, handlers, bus subscriptions."""

from __future__ import annotations

import asyncio
import logging
import re
import tracemalloc
from collections.abc import Sequence
from typing import Any

from prometheus_client import Histogram

from chatbus.contracts.memory import (
    MEMORY_STREAM,
    GetHistory,
    GetProfile,
    GetStats,
    ImportTurns,
    SearchMemory,
    TurnsIndexed,
    TurnsStored,
    TurnsStoredBatch,
    TurnStored,
    UpdateProfile,
)
from chatbus.forget import serve_forget
from chatbus.jetstream import ConsumerSpec, consume_batches, ensure_dlq
from chatbus.memory_client import ensure_memory_stream
from chatbus.redis_link import RedisLink
from chatbus.runtime import Runtime
from chatbus_memory.embed_queue import BatchingEmbedder
from chatbus_memory.embedder import CachedEmbedder, Embedder, OpenAIEmbedder
from chatbus_memory.engine import Caps, Engine
from chatbus_memory.handlers import Handlers
from chatbus_memory.profile import Profiles
from chatbus_memory.profile_extract import make_extractor
from chatbus_memory.rerank import Reranker
from chatbus_memory.settings import MemorySettings
from chatbus_memory.static_embedder import offline_embedder
from chatbus_memory.store import VectorStore
from chatbus_memory.summarize import ExtractiveSummarizer, LLMSummarizer, Summarizer
from chatbus_memory.text import Chunker, SparseEncoder

log = logging.getLogger("chatbus.memory")

QUEUE = "memory"
# seconds: 0.5 ms .. 5 s
SEARCH_BUCKETS = (
    *(x / 10_000 for x in (5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500)),
    *(0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
DURABLE = "memory-turns"  # TurnsStored: one event per answered message
DURABLE_GROUPED = "memory-turns-batch"  # TurnsStoredBatch: concurrent messages' events
DURABLE_ONE_TURN = "memory-store"  # TurnStored, one turn per event (older publishers)


def secret(s: Any) -> str | None:
    return s.get_secret_value() if s is not None else None


async def make_embedder(settings: MemorySettings) -> Embedder:
    if settings.embeddings == "openai":
        emb = OpenAIEmbedder(
            model=settings.embedding_model,
            dims=1536,
            base_url=settings.openai_base_url,
            api_key=secret(settings.openai_api_key),
            batch_size=max(settings.embed_batch, 256),  # the API takes up to 2,048 inputs
            dimensions=settings.embedding_dimensions or None,
        )
        await emb.probe()
        return emb
    return await asyncio.to_thread(offline_embedder, settings)


def make_store(settings: MemorySettings, model: str, dims: int) -> VectorStore:
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", model).strip("-").lower()
    if settings.qdrant_url:
        from qdrant_client import AsyncQdrantClient

        from chatbus_memory.store_qdrant import QdrantStore

        client = AsyncQdrantClient(url=settings.qdrant_url, api_key=secret(settings.qdrant_api_key))
        return QdrantStore(client, f"{settings.qdrant_collection}_{slug}_{dims}")
    from chatbus_memory.store_edge import EdgeStore

    return EdgeStore(settings.data_dir / "memory" / f"{slug}-{dims}")


def make_summarizer(settings: MemorySettings) -> Summarizer:
    if settings.summary_llm and (settings.openai_base_url or settings.openai_api_key):
        return LLMSummarizer(
            base_url=settings.openai_base_url,
            api_key=secret(settings.openai_api_key),
            model=settings.summary_model,
            timeout=settings.summary_timeout_s,
        )
    return ExtractiveSummarizer()


async def build(settings: MemorySettings, redis: RedisLink) -> tuple[Engine, Handlers]:
    """Everything but the bus. The caller closes ``engine.store``."""
    embedder = await make_embedder(settings)
    parallel = settings.embed_parallel if settings.embeddings == "openai" else 1
    batching = BatchingEmbedder(
        embedder, max_batch=max(settings.embed_batch, 256), parallel=parallel
    )
    cache = CachedEmbedder(batching, max_entries=settings.embed_cache_entries)
    store = make_store(settings, embedder.model, embedder.dims)
    await store.open(embedder.dims)
    engine = Engine(
        store=store,
        embedder=cache,
        sparse=SparseEncoder(k=settings.bm25_k, b=settings.bm25_b, avg_len=settings.bm25_avg_len),
        chunker=Chunker(settings.memory_chunk_tokens, settings.memory_chunk_max_tokens),
        summarizer=make_summarizer(settings),
        caps=Caps(settings.memory_session_cap, settings.memory_summary_batch),
        fusion=settings.fusion(),
        threshold=settings.memory_threshold,
        speaker_in_dense=settings.memory_speaker_in_dense,
        speaker_in_sparse=settings.memory_speaker_in_sparse,
        date_in_dense=settings.memory_date_in_dense,
        date_in_sparse=settings.memory_date_in_sparse,
        reranker=Reranker.of(settings),
    )
    return engine, Handlers(engine, redis, settings.redis_prefix, cache)


async def trace_heap(every_s: float, top: int = 8) -> None:
    """Log the Python heap (traced by tracemalloc) and its largest allocation sites, forever.

    Against the process's anonymous RSS it tells Python objects from the engine's (native)
    memory; the sites show what grows. Opt-in (``MEMORY_HEAP_TRACE_S``): tracing is slow.
    """
    tracemalloc.start(1)
    while True:
        await asyncio.sleep(every_s)  # allowed: the reporting interval
        traced, peak = tracemalloc.get_traced_memory()
        stats = tracemalloc.take_snapshot().statistics("lineno")[:top]
        sites = "; ".join(f"{s.traceback[0]} {s.size / 2**20:.1f} MiB ({s.count})" for s in stats)
        log.warning("heap: Python %.1f MiB (peak %.1f): %s", traced / 2**20, peak / 2**20, sites)


async def wire(settings: MemorySettings, rt: Runtime) -> None:
    if settings.memory_heap_trace_s > 0:
        rt.bus.spawn(trace_heap(settings.memory_heap_trace_s))
    redis = rt.redis_link()
    engine, handlers = await build(settings, redis)
    handlers.search_seconds = Histogram(
        "chatbus_memory_search_seconds",
        "Time to answer a memory search (query embedding included)",
        buckets=SEARCH_BUCKETS,
        registry=rt.registry,
    )
    rt.stack.push_async_callback(engine.store.close)
    if handlers.cache is not None:
        rt.stack.push_async_callback(handlers.cache.close)
    rt.add_ready_check("vector_store", engine.store.ping)
    bus = rt.bus
    handlers.bus = bus
    await ensure_memory_stream(bus, max_age_s=settings.memory_stream_max_age_s)  # imports use it

    await bus.subscribe(SearchMemory.subject, SearchMemory, handlers.search, queue=QUEUE)
    await bus.subscribe(GetHistory.subject, GetHistory, handlers.history, queue=QUEUE)
    await bus.subscribe(GetStats.subject, GetStats, handlers.stats, queue=QUEUE)
    await bus.subscribe(ImportTurns.subject, ImportTurns, handlers.import_turns, queue=QUEUE)
    if settings.memory_profiles != "off":
        handlers.profiles = Profiles(bus, make_extractor(settings))
        await handlers.profiles.open()
        p = handlers.profiles
        await bus.subscribe(GetProfile.subject, GetProfile, p.handle_get, queue=QUEUE)
        await bus.subscribe(UpdateProfile.subject, UpdateProfile, p.handle_update, queue=QUEUE)

    serve_forget(bus, "memory", handlers.forget_event)  # forget events: memory's own state
    await ensure_dlq(bus)

    async def on_batch(events: Sequence[TurnsStored | TurnStored]) -> None:
        items = await handlers.store_events(list(events))
        try:
            notice = TurnsIndexed(
                event_ids=[i.turn_id for i in items],
                sessions=sorted({i.session_id for i in items}),
            )
            await bus.publish(notice)
        except Exception:  # a notice is a courtesy; the turns are stored
            log.warning("could not publish %s", TurnsIndexed.subject, exc_info=True)

    batch = settings.memory_consumer_batch

    def spec(durable: str, subject: str) -> ConsumerSpec:
        return ConsumerSpec(
            stream=MEMORY_STREAM, durable=durable, subject=subject, batch=batch, ack_wait=60.0
        )

    bus.spawn(consume_batches(bus, spec(DURABLE, TurnsStored.subject), TurnsStored, on_batch))

    async def on_grouped(batches: Sequence[TurnsStoredBatch]) -> None:
        await on_batch([e for b in batches for e in b.events])

    grouped = spec(DURABLE_GROUPED, TurnsStoredBatch.subject)
    grouped.batch = max(1, batch // 16)  # each holds the events of concurrent messages
    bus.spawn(consume_batches(bus, grouped, TurnsStoredBatch, on_grouped))
    bus.spawn(  # the one-turn event of earlier agents, still stored
        consume_batches(bus, spec(DURABLE_ONE_TURN, TurnStored.subject), TurnStored, on_batch)
    )
    log.info(
        "memory: store %s, embedder %s (%d dims)",
        engine.store.name,
        engine.embedder.model,
        engine.embedder.dims,
    )
