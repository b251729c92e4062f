"""Which agents run on the bus right now: ping them all and collect their introductions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats.errors
from pydantic import ValidationError

from chatbus.bus import Bus
from chatbus.contracts.chat import AgentInfo, AgentPing
from chatbus.errors import BusUnavailable
from chatbus_gateway.api.errors import ApiError


async def discover(bus: Bus, window_s: float) -> list[dict[str, Any]]:
    """Every agent that answered an :class:`AgentPing` within ``window_s``, one entry per id."""
    if not bus.connected:
        raise ApiError(503, "the message bus is unavailable, try again", type="unavailable")
    answers: asyncio.Queue[bytes] = asyncio.Queue()
    infos: list[AgentInfo] = []
    try:
        async with bus.listen(answers.put_nowait) as inbox:
            await bus.publish(AgentPing(), reply=inbox)
            deadline = time.monotonic() + window_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    data = await asyncio.wait_for(answers.get(), left)
                except TimeoutError:
                    break
                try:
                    infos.append(AgentInfo.from_bytes(data))
                except ValidationError:
                    continue
    except (BusUnavailable, nats.errors.Error) as e:
        raise ApiError(503, "the message bus is unavailable, try again", type="unavailable") from e
    return summarize(infos)


def summarize(infos: list[AgentInfo]) -> list[dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for info in infos:
        entry = by_id.setdefault(
            info.id,
            {
                "id": info.id,
                "label": info.label,
                "description": info.description,
                "model": info.model,
                "instances": 0,
                "draining": 0,
            },
        )
        if info.status == "up":
            entry["instances"] += 1
        else:
            entry["draining"] += 1
    return sorted(by_id.values(), key=lambda e: str(e["id"]))
