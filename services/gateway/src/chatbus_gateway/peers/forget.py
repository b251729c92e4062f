"""Asking every owner to forget a session or user over the bus, and how far a request got.

The gateway publishes a :class:`ForgetRequested` on its ``FORGET`` stream and waits up to
``wait_s`` for a :class:`ForgetConfirmed` from every owner in ``FORGET_OWNERS``. A request's
status is read back from the stream, so any gateway replica answers it. The gateway is an owner
too: it forgets its own keys of the session (turn order).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar

from chatbus.bus import Bus
from chatbus.contracts.base import Message
from chatbus.contracts.forget import (
    FORGET_OWNERS,
    FORGET_STREAM,
    ForgetConfirmed,
    ForgetRequested,
)
from chatbus.redis_link import RedisLink
from chatbus_gateway.flow.order import SessionOrder

M = TypeVar("M", bound=Message)


class ForgetDesk:
    """Asks every owner to forget, and tells how far a request got."""

    def __init__(self, bus: Bus, wait_s: float, owners: tuple[str, ...] = FORGET_OWNERS) -> None:
        self.bus, self.wait_s, self.owners = bus, wait_s, owners

    async def ask(self, req: ForgetRequested) -> dict[str, Any]:
        got: dict[str, ForgetConfirmed] = {}
        all_in = asyncio.Event()

        def on_confirmed(data: bytes) -> None:
            with contextlib.suppress(ValueError):
                done = ForgetConfirmed.from_bytes(data)
                got[done.owner] = done
                if set(self.owners) <= got.keys():
                    all_in.set()

        # Listening before publishing: no confirmation can come before we listen.
        subject = f"{ForgetConfirmed.subject}.{req.forget_id}.*"
        async with self.bus.listen(on_confirmed, subject):
            await self.bus.js_publish(req, req.subject_of(), msg_id=req.forget_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), self.wait_s)
        return self.body(req, got)

    async def status(self, tenant: str, forget_id: str) -> dict[str, Any] | None:
        """The request's status, or None when it is unknown (or another tenant's)."""
        req = await self._last(f"{ForgetRequested.subject}.{forget_id}", ForgetRequested)
        if req is None or req.tenant_id != tenant:
            return None
        got: dict[str, ForgetConfirmed] = {}
        for owner in self.owners:
            subject = f"{ForgetConfirmed.subject}.{forget_id}.{owner}"
            if (done := await self._last(subject, ForgetConfirmed)) is not None:
                got[owner] = done
        return self.body(req, got)

    async def _last(self, subject: str, model: type[M]) -> M | None:
        data = await self.bus.js_last(FORGET_STREAM, subject)
        return model.from_bytes(data) if data else None

    def body(self, req: ForgetRequested, got: dict[str, ForgetConfirmed]) -> dict[str, Any]:
        pending = [o for o in self.owners if o not in got]
        sessions = {s for done in got.values() for s in done.sessions}
        if req.session_id is not None:
            sessions.add(req.session_id)
        return {
            "forget_id": req.forget_id,
            "status": "pending" if pending else "done",
            **({"session_id": req.session_id} if req.session_id else {"user_id": req.user_id}),
            "confirmed": sorted(got),
            "pending": pending,
            "deleted": sum(d.deleted for d in got.values()),
            "sessions": sorted(sessions),
            "status_url": f"/api/forget/{req.forget_id}",
        }


def gateway_forgetter(order: SessionOrder, redis: RedisLink) -> Any:
    """The gateway's own part: a session's turn-order keys (it keeps nothing per user)."""

    async def forget(req: ForgetRequested) -> tuple[int, list[str]]:
        if req.session_id is None:
            return 0, []
        keys = order.keys(req.tenant_id, req.session_id)
        return int(await redis.call("DEL", *keys)), [req.session_id]

    return forget
