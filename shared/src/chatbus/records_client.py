"""The agents' records seen from another service (the gateway): :class:`BusRecords`.

Records belong to the agent runtime; this asks for them over the bus (``records.query.v1``,
``records.get.v1``) and never reads their keys. Errors arrive as the bus's exceptions
(:class:`~chatbus.errors.RemoteError` ``not_found`` / ``invalid``, :class:`NoResponders`, ...).
"""

from __future__ import annotations

from typing import Any

from chatbus.bus import Bus
from chatbus.contracts.records import GetRecord, QueryRecords, RecordFound, RecordPage


class BusRecords:
    def __init__(self, bus: Bus, *, timeout_s: float = 5.0) -> None:
        self.bus, self.timeout_s = bus, timeout_s

    async def page(self, query: QueryRecords) -> RecordPage:
        return await self.bus.request(query, RecordPage, timeout=self.timeout_s)

    async def get(
        self,
        tenant_id: str,
        kind: str,
        record_id: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """The record (RemoteError ``not_found`` when missing or outside the given scope)."""
        ask = GetRecord(
            tenant_id=tenant_id,
            kind=kind,
            record_id=record_id,
            user_id=user_id,
            session_id=session_id,
        )
        found = await self.bus.request(ask, RecordFound, timeout=self.timeout_s)
        return found.record
