"""One embedding call for many concurrent messages: :class:`BatchingEmbedder`.

Each message's search embeds one text, and each stored batch a few dozen; made one by one,
the fixed cost of a call (an HTTP round trip, an onnxruntime run) dominates. Callers queue
their texts here and wait; a worker takes everything queued so far (up to ``max_batch``
texts) and embeds it in one call, so the busier the service, the larger the batches.
``parallel`` workers may run at once (more than one hides an HTTP endpoint's latency; the
local model runs one inference at a time anyway).
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

from chatbus_memory.embedder import Embedder, Vectors, Wrapping


class BatchingEmbedder(Wrapping):
    def __init__(self, inner: Embedder, *, max_batch: int = 256, parallel: int = 1) -> None:
        super().__init__(inner)
        self.max_batch = max_batch
        self.parallel = max(1, parallel)
        self._queue: deque[tuple[list[str], asyncio.Future[Vectors]]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self.calls = 0  # inner calls made (the bench and tests read it)

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        fut: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._queue.append((texts, fut))
        if len(self._workers) < self.parallel:
            task = asyncio.create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        return await fut

    def _take(self) -> list[tuple[list[str], asyncio.Future[Vectors]]]:
        batch: list[tuple[list[str], asyncio.Future[Vectors]]] = []
        n = 0
        while self._queue and (not batch or n + len(self._queue[0][0]) <= self.max_batch):
            texts, fut = self._queue.popleft()
            if fut.done():  # its caller gave up (cancelled)
                continue
            batch.append((texts, fut))
            n += len(texts)
        return batch

    async def _work(self) -> None:
        while self._queue:
            batch = self._take()
            if not batch:
                continue
            texts = [t for group, _ in batch for t in group]
            self.calls += 1
            try:
                vectors = await self.inner.embed(texts)
            except Exception as e:  # every caller of this batch gets the failure
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            at = 0
            for group, fut in batch:
                if not fut.done():
                    fut.set_result(vectors[at : at + len(group)])
                at += len(group)
