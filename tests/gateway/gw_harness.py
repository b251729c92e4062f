"""What gateway tests share besides fixtures: the handle on an in-process gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatbus.runtime import Runtime


@dataclass
class RunningGateway:
    url: str
    rt: Runtime
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


StartGateway = Callable[..., Awaitable[RunningGateway]]
