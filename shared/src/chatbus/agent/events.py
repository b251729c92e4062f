"""Domain events between agents: publishing, subscribing, and the customer notes they leave.

An agent subscribes with a :class:`Subscription` in its spec::

    @on_event(LeadQualified)
    async def remember_lead(event: LeadQualified, ctx: EventContext) -> None: ...

    SUPPORT = AgentSpec(..., subscriptions=(remember_lead,))

Each subscription is a durable JetStream consumer named ``<agent>-<handler>`` on the
``DOMAIN_EVENTS`` stream: every replica of the agent pulls from the same consumer, so each
agent service handles each event once (and again only if a handler failed, with backoff,
until the dead-letter stream). Handlers should still be idempotent per ``event_id``;
:class:`CustomerNotes` is.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatbus.agent.handoff import BusRouter
from chatbus.agent.keyspace import REDIS_PREFIX
from chatbus.agent.ports import Memory
from chatbus.agent.records import RecordStore
from chatbus.contracts.chat import ChatRequest, Turn
from chatbus.contracts.events import DOMAIN_EVENT_SUBJECTS, DOMAIN_STREAM, DomainEvent
from chatbus.redis_link import RedisLink

if TYPE_CHECKING:
    from chatbus.agent.handler import AgentDeps
    from chatbus.bus import Bus
    from chatbus.metrics import Metrics
    from chatbus.runtime import Runtime

log = logging.getLogger("chatbus.agent.events")

NOTES_TTL_S = 180 * 86400
NOTES_SHOWN = 10


class CustomerNotes:
    """Short facts about a customer that other agents' events taught us, in Redis.

    Kept per user (or per session when the user is unknown), one hash field per event, so
    recording the same event twice keeps one note. The handler puts them in the prompt.
    """

    def __init__(self, redis: RedisLink) -> None:
        self.redis = redis

    @staticmethod
    def key(tenant_id: str, user_id: str | None, session_id: str | None) -> str:
        if user_id:
            return f"{REDIS_PREFIX}{tenant_id}:notes:user:{user_id}"
        return f"{REDIS_PREFIX}{tenant_id}:notes:session:{session_id or '-'}"

    async def add(self, event: DomainEvent, text: str) -> None:
        """Record ``text`` about the customer ``event`` concerns (once per ``event_id``)."""
        key = self.key(event.tenant_id, event.user_id, event.session_id)
        note = json.dumps({"text": text, "ts": event.ts, "source": event.source})
        await self.redis.transaction(
            [("HSETNX", key, event.event_id, note), ("EXPIRE", key, NOTES_TTL_S)]
        )

    def keys_for(self, tenant_id: str, user_id: str | None, session_id: str | None) -> list[str]:
        """The Redis hashes holding notes about this customer (session and user)."""
        keys = {self.key(tenant_id, None, session_id)}
        if user_id:
            keys.add(self.key(tenant_id, user_id, None))
        return sorted(keys)

    @staticmethod
    def ordered(found: list[list[bytes]]) -> list[str]:
        """Note texts, oldest first, from the HGETALL replies of :meth:`keys_for`."""
        notes: list[dict[str, Any]] = [json.loads(v) for h in found for v in h[1::2]]
        notes.sort(key=lambda n: float(n.get("ts", 0)))
        return [str(n["text"]) for n in notes]

    async def all(self, tenant_id: str, user_id: str | None, session_id: str | None) -> list[str]:
        """Every note about this customer, oldest first."""
        keys = self.keys_for(tenant_id, user_id, session_id)
        return self.ordered(await self.redis.batch([("HGETALL", k) for k in keys]))

    async def for_request(self, req: ChatRequest) -> list[str]:
        """The latest notes about the customer asking ``req``."""
        return (await self.all(req.tenant_id, req.user_id, req.session_id))[-NOTES_SHOWN:]


@dataclass
class EventContext:
    """What an event handler may use."""

    agent: str
    records: RecordStore
    notes: CustomerNotes
    memory: Memory | None = None
    publish: Callable[[DomainEvent], Awaitable[None]] | None = None

    async def remember(self, event: DomainEvent, text: str) -> None:
        """Put ``text`` in long-term memory of the customer ``event`` is about (when enabled)."""
        if self.memory is None:
            return
        session = event.session_id or f"events-{event.user_id or 'anonymous'}"
        req = ChatRequest(
            request_id=f"event-{event.event_id}",
            agent=self.agent,
            session_id=session,
            message=text,
            user_id=event.user_id,
            tenant_id=event.tenant_id,
        )
        turn = Turn(role="summary", content=text, created_at=event.ts, agent=self.agent)
        await self.memory.remember(req, [turn])


EventHandler = Callable[[Any, EventContext], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """``handler`` runs for each ``event`` type published on the bus."""

    event: type[DomainEvent]
    handler: EventHandler
    name: str

    def durable(self, agent: str) -> str:
        return f"{agent}-{self.name}"


def on_event(event: type[DomainEvent]) -> Callable[[EventHandler], Subscription]:
    """Decorator: ``@on_event(LeadQualified)`` turns a handler into a :class:`Subscription`."""

    def wrap(fn: EventHandler) -> Subscription:
        return Subscription(event=event, handler=fn, name=fn.__name__)

    return wrap


async def ensure_domain_stream(bus: Bus, max_age_s: float = 30 * 86400) -> None:
    """Create the ``DOMAIN_EVENTS`` stream (file storage, de-duplicated by ``Nats-Msg-Id``)."""
    from nats.js import api

    from chatbus.jetstream import ensure_stream

    await ensure_stream(
        bus,
        DOMAIN_STREAM,
        list(DOMAIN_EVENT_SUBJECTS),
        max_age=max_age_s,
        storage=api.StorageType.FILE,
    )


def event_publisher(bus: Bus) -> Callable[[DomainEvent], Awaitable[None]]:
    async def publish(event: DomainEvent) -> None:
        await bus.js_publish(event, msg_id=event.event_id)
        log.info("event published", extra={"fields": {"subject": event.subject}})

    return publish


def start_subscriptions(bus: Bus, agent: str, subs: tuple[Any, ...], ctx: EventContext) -> None:
    """One durable consumer per subscription, running until the bus drains."""
    from chatbus.jetstream import ConsumerSpec, consume

    for sub in subs:
        assert isinstance(sub, Subscription), f"not a Subscription: {sub!r}"
        spec = ConsumerSpec(
            stream=DOMAIN_STREAM,
            durable=sub.durable(agent),
            subject=sub.event.subject,
            backoff=(1.0, 2.0, 4.0, 8.0),
        )

        async def handle(event: DomainEvent, sub: Subscription = sub) -> None:
            started = time.perf_counter()
            await sub.handler(event, ctx)
            log.info(
                "event handled",
                extra={
                    "fields": {
                        "subject": event.subject,
                        "handler": sub.name,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    }
                },
            )

        bus.spawn(consume(bus, spec, sub.event, handle))


async def attach_collaboration(rt: Runtime, deps: AgentDeps, metrics: Metrics) -> None:
    """Wire handoffs, tool records and domain events (publishing and subscriptions)."""
    redis = rt.redis_link()
    spec = deps.spec
    deps.router = BusRouter(
        rt.bus,
        redis,
        timeout_s=deps.config.handoff_timeout_s,
        on_handoff=lambda source, target: metrics.handoffs.labels(source, target).inc(),
    )
    deps.records = RecordStore(redis)
    deps.notes = CustomerNotes(redis)
    await ensure_domain_stream(rt.bus)
    deps.publish_event = event_publisher(rt.bus)
    ctx = EventContext(
        agent=spec.id,
        records=deps.records,
        notes=deps.notes,
        memory=deps.memory,
        publish=deps.publish_event,
    )
    start_subscriptions(rt.bus, spec.id, spec.subscriptions, ctx)
