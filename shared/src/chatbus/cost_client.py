"""The cost service as seen by agents, the gateway and the CLI (``chatbus.agent.ports.Costs``).

``authorize`` asks the cost service before an LLM call. When the service is not running or
does not answer in time the call is allowed (reason ``"cost service unavailable"``) and a
warning is logged: an outage of accounting must not take the chatbots down (fail open). Budgets
are therefore not enforced while the cost service is down; usage is still published to the
``COST`` stream and counted when it comes back.

``record`` publishes a :class:`UsageRecorded` event to JetStream with ``Nats-Msg-Id`` = the event
id (request id + reservation or step), so a retried publish counts once.

Where no budget can apply (the cost service says so: ``unbudgeted_s``), ``authorize`` allows
the calls of that tenant and agent without asking, for that long or until the cost service
announces it (re)loaded its rules (:class:`BudgetsLoaded`): one bus round trip less per
message; a budget added later is enforced from the service's restart on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from nats.js import api

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest, Usage
from chatbus.contracts.cost import (
    COST_STREAM,
    Authorization,
    AuthorizeSpend,
    BudgetReport,
    BudgetsLoaded,
    BudgetState,
    CountTokens,
    GroupBy,
    ReportBudgets,
    ReportUsage,
    SpendDecision,
    TokenCount,
    UsageBatch,
    UsageRecorded,
    UsageReport,
)
from chatbus.deadline import budget
from chatbus.errors import BusError, BusUnavailable, NoResponders, RemoteError, RequestTimeout
from chatbus.group_publish import GroupPublisher
from chatbus.jetstream import ensure_stream
from chatbus.streams import stream_exists

log = logging.getLogger("chatbus.cost_client")

UNAVAILABLE = "cost service unavailable"
# Tenants x agents remembered as unbudgeted; past this the memory starts again.
MAX_UNBUDGETED = 10_000


async def ensure_cost_stream(bus: Bus, max_age_s: float = 90 * 86400) -> None:
    """Create (or update) the ``COST`` stream that carries usage events."""
    await ensure_stream(
        bus,
        COST_STREAM,
        [UsageRecorded.subject, UsageBatch.subject],
        max_age=max_age_s,
        storage=api.StorageType.FILE,
        duplicate_window=600.0,
    )


def event_id_for(request_id: str, auth: Authorization, *, cached: bool, step: int | None) -> str:
    """The id that makes one LLM call's usage count once, however often it is published."""
    if step is not None:
        return f"{request_id}:{step}"
    if auth.reservation_id:
        return f"{request_id}:{auth.reservation_id}"
    return f"{request_id}:{'cache' if cached else auth.model}"


class BusCosts:
    """Talks to the cost service over NATS. Implements ``chatbus.agent.ports.Costs``."""

    def __init__(
        self,
        bus: Bus,
        *,
        timeout_s: float = 2.0,
        max_completion_tokens: int | None = None,
    ) -> None:
        self.bus = bus
        self.timeout_s = timeout_s
        self.max_completion_tokens = max_completion_tokens
        self._stream_ready = False
        # (tenant, agent) -> monotonic time until which no budget applies to their calls
        self._unbudgeted: dict[tuple[str, str], float] = {}
        self._batches_seen = False
        self._writes: GroupPublisher[UsageRecorded] = GroupPublisher(self._write)

    async def watch_budgets(self) -> None:
        """Forget what was unbudgeted whenever the cost service (re)loads its rules."""

        async def loaded(_: BudgetsLoaded) -> None:
            self._unbudgeted.clear()

        await self.bus.subscribe(BudgetsLoaded.subject, BudgetsLoaded, loaded)

    async def authorize(
        self, req: ChatRequest, *, model: str, cheap_model: str | None, prompt_tokens: int
    ) -> Authorization:
        """Reserve the estimated cost of a call; allow, downgrade to ``cheap_model`` or deny."""
        key = (req.tenant_id, req.agent)
        until = self._unbudgeted.get(key)
        if until is not None:
            if time.monotonic() < until:
                return Authorization(decision="allow", model=model)
            del self._unbudgeted[key]
        ask = AuthorizeSpend(
            request_id=req.request_id,
            tenant_id=req.tenant_id,
            user_id=req.user_id,
            agent=req.agent,
            session_id=req.session_id,
            model=model,
            cheap_model=cheap_model,
            prompt_tokens=prompt_tokens,
            max_completion_tokens=self.max_completion_tokens,
        )
        try:
            wait = budget(req.deadline, self.timeout_s, share=0.1)
            got = await self.bus.request(ask, SpendDecision, timeout=wait, deadline=req.deadline)
        except (NoResponders, RequestTimeout, BusUnavailable) as e:
            log.warning("authorize %s: %s (%s); allowing", req.request_id, UNAVAILABLE, e)
            return Authorization(decision="allow", model=model, reason=UNAVAILABLE)
        except RemoteError as e:
            log.warning("authorize %s refused by cost service: %s; allowing", req.request_id, e)
            return Authorization(decision="allow", model=model, reason=f"{UNAVAILABLE}: {e}")
        if got.unbudgeted_s > 0:
            if len(self._unbudgeted) >= MAX_UNBUDGETED:
                self._unbudgeted.clear()
            self._unbudgeted[key] = time.monotonic() + got.unbudgeted_s
        return Authorization(
            decision=got.decision,
            model=got.model,
            reservation_id=got.reservation_id,
            reason=got.reason,
        )

    async def record(
        self,
        req: ChatRequest,
        auth: Authorization,
        *,
        model: str,
        usage: Usage,
        cached: bool,
        counted: bool,
        step: int | None = None,
    ) -> None:
        """Publish the usage of one LLM call (or cache hit); settles its reservation.

        ``step`` numbers the calls of one request when there is no reservation to tell them
        apart. A publish that fails is logged, never raised: the user already has the answer.
        """
        # A handed-off request is answered by several agents (maybe one twice), each with
        # calls of its own to count.
        call_of = req.request_id
        if req.handoff_depth:
            call_of = f"{req.request_id}:{req.agent}:{req.handoff_depth}"
        event = UsageRecorded(
            event_id=event_id_for(call_of, auth, cached=cached, step=step),
            request_id=req.request_id,
            tenant_id=req.tenant_id,
            user_id=req.user_id,
            agent=req.agent,
            session_id=req.session_id,
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached=cached,
            counted=counted,
            reservation_id=auth.reservation_id,
            ts=time.time(),
        )
        await self._writes.publish(event, size=400, deadline=req.deadline)

    async def _write(self, events: list[UsageRecorded], deadline: float | None) -> None:
        """One JetStream write for the usage of concurrent messages (never raises)."""
        if len(events) > 1 and self._stream_ready:
            seed = "\0".join(e.event_id for e in events)
            batch_id = "b:" + hashlib.sha256(seed.encode()).hexdigest()[:40]
            try:
                wait = deadline if self._batches_seen else None
                await self.bus.js_publish(UsageBatch(events=events), msg_id=batch_id, deadline=wait)
                self._batches_seen = True
                return
            except Exception as e:  # a stream made by an older cost service: one by one
                log.info("usage batch not published (%s); publishing its events one by one", e)
        await asyncio.gather(*(self.publish_usage(e, deadline=deadline) for e in events))

    async def publish_usage(self, event: UsageRecorded, deadline: float | None = None) -> None:
        """Publish one usage event durably (creating the stream when it does not exist yet);
        a stream electing a leader is asked again until ``deadline``."""
        try:
            wait = deadline if self._stream_ready else None
            await self.bus.js_publish(event, msg_id=event.event_id, deadline=wait)
            self._stream_ready = True
            return
        except Exception as e:
            failure: Exception = e
        if not self._stream_ready:
            try:
                if not await stream_exists(self.bus, COST_STREAM):
                    await ensure_cost_stream(self.bus)
                self._stream_ready = True
                await self.bus.js_publish(event, msg_id=event.event_id, deadline=deadline)
                return
            except Exception as e:
                failure = e
        log.error("usage event %s not recorded: %s", event.event_id, failure)

    async def count(
        self,
        model: str,
        *,
        text: str | None = None,
        messages: list[dict[str, Any]] | None = None,
    ) -> TokenCount:
        """Ask the cost service to count tokens (the agent counts locally with TokenCounter)."""
        return await self.bus.request(
            CountTokens(model=model, text=text, messages=messages),
            TokenCount,
            timeout=self.timeout_s,
        )

    async def report(
        self,
        *,
        tenant_id: str | None,
        from_date: str,
        to_date: str,
        group_by: GroupBy = "day",
        timeout_s: float = 10.0,
    ) -> UsageReport:
        """Usage between two ISO dates (inclusive); ``tenant_id=None`` for every tenant.

        Raises :class:`~chatbus.errors.BusError` subclasses when the cost service is down and
        :class:`~chatbus.errors.RemoteError` (code ``invalid``) for a bad range.
        """
        ask = ReportUsage(
            tenant_id=tenant_id or "default",
            all_tenants=tenant_id is None,
            from_date=from_date,
            to_date=to_date,
            group_by=group_by,
        )
        return await self.bus.request(ask, UsageReport, timeout=timeout_s)

    async def budgets(self, *, tenant_id: str | None, timeout_s: float = 5.0) -> list[BudgetState]:
        """Each budget's use in its current period; ``tenant_id=None`` for every rule.

        Raises :class:`~chatbus.errors.BusError` subclasses when the cost service is down.
        """
        ask = ReportBudgets(tenant_id=tenant_id or "default", all_tenants=tenant_id is None)
        return (await self.bus.request(ask, BudgetReport, timeout=timeout_s)).budgets


__all__ = ["UNAVAILABLE", "BusCosts", "BusError", "ensure_cost_stream", "event_id_for"]
