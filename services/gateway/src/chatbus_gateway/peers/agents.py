"""Which agents run on the bus right now: ping them all and collect their introductions."""

from __future__ import annotations

import time
from typing import Any

import nats.errors
from pydantic import ValidationError

from chatbus.bus import Bus, trace_headers
from chatbus.contracts.chat import AgentInfo, AgentPing
from chatbus_gateway.api.errors import ApiError


async def discover(bus: Bus, window_s: float) -> list[dict[str, Any]]:
    """Every agent that answered an :class:`AgentPing` within ``window_s``, one entry per id."""
    if not bus.connected:
        raise ApiError(503, "the message bus is unavailable, try again", type="unavailable")
    inbox = bus.nc.new_inbox()
    infos: list[AgentInfo] = []
    try:
        sub = await bus.nc.subscribe(inbox)
        try:
            await bus.nc.publish(
                AgentPing.subject, AgentPing().to_bytes(), reply=inbox, headers=trace_headers()
            )
            deadline = time.monotonic() + window_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                try:
                    infos.append(AgentInfo.from_bytes(msg.data))
                except ValidationError:
                    continue
        finally:
            await sub.unsubscribe()
    except nats.errors.Error as e:
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
