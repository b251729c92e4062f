"""Two memory instances on one Qdrant store share the turns, and lose or double none.

What ``QDRANT_URL`` gives a multi-instance deployment: both instances consume the one durable
JetStream consumer of turns (each batch goes to one of them, unacked batches to the other) and
write to the same Qdrant collection with point ids derived from (tenant, session, turn, chunk).
No Qdrant server runs here: the store is qdrant-client's local mode, shared by two instances
of the service running in this process (its API is the server client's).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from qdrant_client import AsyncQdrantClient

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest, Turn
from chatbus.contracts.memory import TurnStored
from chatbus.memory_client import BusMemory, turn_event_id
from chatbus_dev.offline_llm import OfflineLLM
from chatbus_memory import service
from chatbus_memory.settings import MemorySettings
from chatbus_memory.store import ChunkPoint
from chatbus_memory.store_qdrant import QdrantStore
from tests.memory.conftest import Indexed, indexed, memory_settings, running_memory

pytestmark = [pytest.mark.slow]
__all__ = ["indexed"]


class SharedStore(QdrantStore):
    """The one Qdrant both instances write to; an instance stopping leaves it open."""

    upserted = 0  # points this instance wrote

    async def upsert(self, points: list[ChunkPoint]) -> None:
        await super().upsert(points)
        self.upserted += len(points)

    async def close(self) -> None:
        return None


@pytest_asyncio.fixture
async def stores(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[SharedStore]]:
    """Each memory instance's store, in start order, all on one local-mode Qdrant."""
    client = AsyncQdrantClient(location=":memory:")
    made: list[SharedStore] = []

    def make_store(settings: MemorySettings, model: str, dims: int) -> QdrantStore:
        made.append(SharedStore(client, f"{settings.qdrant_collection}_{dims}"))
        return made[-1]

    monkeypatch.setattr(service, "make_store", make_store)
    yield made
    await client.close()


async def remember(memory: BusMemory, sessions: list[str], n: int, tag: str) -> list[str]:
    """``n`` user turns spread over ``sessions``, one after another.

    One at a time, so each is its own JetStream message: turns published at once would go
    out as one grouped write, which a single instance takes whole.
    """

    async def one(i: int) -> str:
        session = sessions[i % len(sessions)]
        text = f"{tag} fact number {i} of {session}"
        req = ChatRequest(request_id=uuid.uuid4().hex, agent="a", session_id=session, message=text)
        await memory.remember(req, [Turn(role="user", content=text)])
        return turn_event_id(req, 0)

    return [await one(i) for i in range(n)]


async def test_two_memory_instances_share_turns_and_survive_one_leaving(
    bus: Bus,
    nats_url: str,
    redis_url: str,
    tmp_path: Path,
    fake_llm: tuple[OfflineLLM, str],
    stores: list[SharedStore],
    indexed: Indexed,
) -> None:
    _, llm_url = fake_llm
    kw: dict[str, Any] = {
        "embeddings": "openai",
        "openai_base_url": llm_url,
        "openai_api_key": "sk-test-memory",
        "qdrant_collection": f"shared_{uuid.uuid4().hex[:8]}",
        "memory_profiles": "off",
        "memory_consumer_batch": 4,  # small batches, so both instances get some
    }
    memory = BusMemory(bus, timeout=20)
    sessions = [f"m-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    a_settings = memory_settings(nats_url, redis_url, tmp_path / "a", **kw)
    b_settings = memory_settings(nats_url, redis_url, tmp_path / "b", **kw)
    async with running_memory(b_settings):
        async with running_memory(a_settings):
            first = await remember(memory, sessions, 60, "before")
            await indexed.wait_for(first, timeout=60)
        b, a = stores
        assert a.upserted > 0 and b.upserted > 0  # both took a share
        a_before = a.upserted
        # A has left (its in-flight batches drained or handed back); B takes every new turn.
        later = await remember(memory, sessions, 30, "after")
        await indexed.wait_for(later, timeout=60)
        assert a.upserted == a_before  # every later turn went to B
        # A redelivery of a stored turn (a publish retried under another message id).
        replay = TurnStored(
            event_id=first[0],
            session_id=sessions[0],
            turn=Turn(role="user", content=f"before fact number 0 of {sessions[0]}"),
        )
        indexed.seen.discard(first[0])
        await bus.js_publish(replay, msg_id=f"retry-{uuid.uuid4().hex}")
        await indexed.wait_for([first[0]], timeout=60)

        for i, session in enumerate(sessions):
            history = await memory.history("default", session, limit=100)
            texts = [t.content for t in history]
            want = [
                f"{tag} fact number {n} of {session}"
                for tag, count in (("before", 60), ("after", 30))
                for n in range(count)
                if n % len(sessions) == i
            ]
            assert sorted(texts) == sorted(want), session  # none missing, none twice
