"""Restarting the memory service (gracefully or by a crash) loses nothing and stores nothing twice.

The service runs as a real process (``python -m chatbus_memory``) on the embedded store.
"""

from __future__ import annotations

import uuid

import pytest

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest, Turn
from chatbus.contracts.memory import TurnStored
from chatbus.memory_client import BusMemory, turn_event_id
from chatbus_dev.testing import ServiceFactory

from .conftest import Indexed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def remember(memory: BusMemory, session: str, texts: list[str]) -> list[str]:
    ids = []
    for text in texts:
        req = ChatRequest(
            request_id=uuid.uuid4().hex, agent="a", session_id=session, message=text, user_id="u1"
        )
        await memory.remember(req, [Turn(role="user", content=text)])
        ids.append(turn_event_id(req, 0))
    return ids


async def test_restart_between_store_and_search_loses_nothing(
    bus: Bus, service_factory: ServiceFactory, indexed: Indexed
) -> None:
    memory = BusMemory(bus, timeout=10)
    session = f"r-{uuid.uuid4().hex[:8]}"
    env = {"EMBEDDINGS": "local", "LOG_FORMAT": "text"}

    first = await service_factory.start("chatbus_memory", **env)
    facts = ["My order number is 4471.", "My dog is called Biscuit."]
    ids = await remember(memory, session, facts + [f"small talk {i}" for i in range(8)])
    await indexed.wait_for(ids)
    assert first.stop(timeout=60) == 0

    # while it is down: new turns, and a redelivery of a stored turn under another message id
    later = await remember(memory, session, [f"while down {i}" for i in range(4)])
    replay = TurnStored(
        event_id=ids[0], session_id=session, user_id="u1", turn=Turn(role="user", content=facts[0])
    )
    await bus.js_publish(replay, msg_id=f"other-{uuid.uuid4().hex}")

    second = await service_factory.start("chatbus_memory", **env)
    await indexed.wait_for(later)
    stats = await memory.stats("default", session)
    assert stats.session_turns == 14
    hits = await memory.search("default", query="what is my order number", session_id=session)
    assert "4471" in hits.hits[0].turn.content

    # a crash (no flush, no drain) loses nothing either
    second.kill()
    await service_factory.start("chatbus_memory", **env)
    assert (await memory.stats("default", session)).session_turns == 14
    hits = await memory.search("default", query="dog's name", session_id=session)
    assert "Biscuit" in hits.hits[0].turn.content
    assert len(await memory.history("default", session, limit=100)) == 14
