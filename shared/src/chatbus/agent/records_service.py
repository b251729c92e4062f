"""The agent runtime answers for its records: ``records.query.v1`` and ``records.get.v1``.

Every agent service subscribes in the queue group ``agent-records`` (one instance answers each
request), so the gateway — or anyone else — reads tickets, leads, invoices and orders by asking
over the bus, never from Redis. Also wires the drafts of money-moving tools and, in development
when ``DEMO_DATA`` asks for it, the agent's demo records.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatbus.agent.drafts import Drafts
from chatbus.agent.forget import AgentForgetter
from chatbus.agent.records import RecordStore, seed_demo
from chatbus.contracts.records import (
    RECORDS_QUEUE,
    GetRecord,
    QueryRecords,
    RecordFound,
    RecordPage,
)
from chatbus.errors import RemoteError
from chatbus.forget import serve_forget
from chatbus.redis_link import RedisError

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription

    from chatbus.agent.handler import AgentDeps
    from chatbus.agent.settings import AgentSettings
    from chatbus.bus import Bus
    from chatbus.runtime import Runtime

log = logging.getLogger("chatbus.agent.records")


class RecordsResponder:
    """Answers records requests from the store, within the asked tenant, user and session."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def query(self, q: QueryRecords) -> RecordPage:
        try:
            records, cursor = await self.store.page(
                q.tenant_id,
                q.kind,
                session_id=q.session_id,
                user_id=q.user_id,
                limit=q.limit,
                cursor=q.cursor,
            )
        except ValueError as e:
            raise RemoteError("invalid", str(e), {"loc": ["cursor"], "msg": str(e)}) from None
        except RedisError as e:
            msg = f"records store unavailable ({type(e).__name__})"
            raise RemoteError("unavailable", msg) from None
        return RecordPage(records=records, next_cursor=cursor)

    async def get(self, g: GetRecord) -> RecordFound:
        try:
            record = await self.store.get(g.tenant_id, g.kind, g.record_id)
        except RedisError as e:
            msg = f"records store unavailable ({type(e).__name__})"
            raise RemoteError("unavailable", msg) from None
        if (
            record is None
            or (g.user_id is not None and record.get("user_id") != g.user_id)
            or (g.session_id is not None and record.get("session_id") != g.session_id)
        ):
            raise RemoteError("not_found", f"no {g.kind} {g.record_id[:80]!r}")
        return RecordFound(record=record)

    async def subscribe(self, bus: Bus, max_in_flight: int = 64) -> list[Subscription]:
        return [
            await bus.subscribe(
                QueryRecords.subject,
                QueryRecords,
                self.query,
                queue=RECORDS_QUEUE,
                max_in_flight=max_in_flight,
            ),
            await bus.subscribe(
                GetRecord.subject,
                GetRecord,
                self.get,
                queue=RECORDS_QUEUE,
                max_in_flight=max_in_flight,
            ),
        ]


async def attach_records(rt: Runtime, deps: AgentDeps, settings: AgentSettings) -> None:
    """Serve records over the bus, wire drafts, seed demo records where asked."""
    store = deps.records or RecordStore(rt.redis_link())
    deps.records = store
    deps.drafts = Drafts(store.redis, settings.money_policies())
    await RecordsResponder(store).subscribe(rt.bus)
    serve_forget(rt.bus, "agent", AgentForgetter(store.redis).forget)  # forget events
    owners = settings.demo_owners()
    if owners and deps.spec.demo_records:
        made = await seed_demo(store, deps.spec.demo_records, owners, log.warning)
        log.warning("DEMO_DATA: %d demo records seeded (development only)", made)
