from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.ops.webhook import Clock, Receiver


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    runner = await rec.start()
    yield rec
    await runner.cleanup()


@pytest_asyncio.fixture
async def clock() -> Clock:
    return Clock()
