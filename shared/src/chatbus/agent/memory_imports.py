"""The agent runtime learns of imported transcripts: :func:`serve_imports`.

An import (``POST /api/sessions/{id}/messages``) goes to the memory service, which stores the
turns and then publishes :class:`~chatbus.contracts.memory.TurnsImported` on its ``MEMORY``
stream. Every agent service shares one durable consumer of it (they are one owner of the
``agent:`` keys); each event adds the imported turns to the session's and user's remembered
counts (:meth:`~chatbus.agent.history.RedisHistory.note_imported`), so the session's next
message searches memory although the runtime holds no history of it.
"""

from __future__ import annotations

import nats.js.errors

from chatbus.agent.history import RedisHistory
from chatbus.bus import Bus
from chatbus.contracts.memory import IMPORTS_DURABLE, MEMORY_STREAM, TurnsImported
from chatbus.jetstream import ConsumerSpec, consume
from chatbus.memory_client import ensure_memory_stream

DURABLE = IMPORTS_DURABLE


def serve_imports(bus: Bus, history: RedisHistory) -> None:
    """Count imported turns as the sessions' past until the bus drains."""

    async def handle(event: TurnsImported) -> None:
        await history.note_imported(event.tenant_id, event.session_id, event.user_id, event.turns)

    spec = ConsumerSpec(
        stream=MEMORY_STREAM,
        durable=DURABLE,
        subject=TurnsImported.subject,
        ack_wait=30.0,
        batch=64,
        concurrency=8,
    )

    async def run() -> None:
        try:
            await bus.js.stream_info(MEMORY_STREAM)
        except nats.js.errors.NotFoundError:  # memory never ran yet: the stream is ours to make
            await ensure_memory_stream(bus)
        await consume(bus, spec, TurnsImported, handle)

    bus.spawn(run())
