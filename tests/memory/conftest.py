"""Fixtures for the memory service tests: the service in-process, on the session's NATS/Redis."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from chatbus.bus import Bus
from chatbus.contracts.memory import TurnsIndexed
from chatbus.runtime import Runtime
from chatbus_dev.servers import free_port
from chatbus_dev.testing import serving
from chatbus_memory.service import wire
from chatbus_memory.settings import MemorySettings


@contextlib.asynccontextmanager
async def running_memory(settings: MemorySettings) -> AsyncIterator[Runtime]:
    """Run the memory service in this event loop until the block ends."""
    async with serving(settings, functools.partial(wire, settings), timeout=60) as service:
        yield service.rt


def memory_settings(nats_url: str, redis_url: str, data_dir: Path, **kw: Any) -> MemorySettings:
    return MemorySettings(
        nats_url=nats_url,
        redis_url=redis_url,
        data_dir=data_dir,
        port=free_port(),
        host="127.0.0.1",
        log_format="text",
        **kw,
    )


class Indexed:
    """Waits for the service's ``memory.indexed.v1`` notices (no sleeping)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.changed = asyncio.Event()

    async def on_notice(self, msg: TurnsIndexed) -> None:
        self.seen.update(msg.event_ids)
        self.changed.set()

    async def wait_for(self, event_ids: list[str], timeout: float = 20.0) -> None:
        async def until() -> None:
            while not set(event_ids) <= self.seen:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


@pytest_asyncio.fixture
async def indexed(bus: Bus) -> Indexed:
    watcher = Indexed()
    await bus.subscribe(TurnsIndexed.subject, TurnsIndexed, watcher.on_notice)
    return watcher
