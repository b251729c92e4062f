from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
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


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was (for tests that call setup_logging)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
