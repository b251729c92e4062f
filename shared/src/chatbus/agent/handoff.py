"""Handing a conversation to another agent over the bus.

The LLM sees one tool per allowed target (``transfer_to_sales``). Calling it sets the session's
route (``chatbus:{tenant}:route:{session}``) and forwards the message to the target agent,
whose reply becomes the answer (``agent`` = target, ``handoff_from`` = this agent). Later
messages that reach any agent for a routed session are forwarded to the routed agent, so the
gateway and the OpenAI-compatible API need not know; the target hands back the same way.

Loops are cut by ``ChatRequest.handoff_depth``: at the limit an agent answers itself. A target
with no running instance leaves the route unchanged and the current agent answers, told why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chatbus.agent.keyspace import REDIS_PREFIX
from chatbus.agent.ports import ToolCall
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus.errors import BusUnavailable, NoResponders, RemoteError, RequestTimeout
from chatbus.redis_link import RedisLink

log = logging.getLogger("chatbus.agent.handoff")

TRANSFER_PREFIX = "transfer_to_"
ROUTE_TTL_S = 7 * 86400  # like the session history


def route_key(tenant_id: str, session_id: str) -> str:
    """The Redis key holding the agent a session is routed to."""
    return f"{REDIS_PREFIX}{tenant_id}:route:{session_id}"


class Router(Protocol):
    """Where sessions are routed, and how a message reaches another agent."""

    async def route_of(self, tenant_id: str, session_id: str) -> str | None: ...

    async def set_route(self, tenant_id: str, session_id: str, agent: str | None) -> None: ...

    async def forward(self, req: ChatRequest, target: str) -> ChatReply:
        """The target's reply; raises :class:`NoResponders` when no instance runs."""
        ...

    def handed_off(self, source: str, target: str) -> None:
        """Count one handoff (metrics)."""
        ...


class BusRouter:
    """Routes in Redis, forwarding by request/reply on ``chat.request.v1.<target>``."""

    def __init__(
        self,
        bus: Any,  # chatbus.bus.Bus
        redis: RedisLink,
        *,
        timeout_s: float = 25.0,
        on_handoff: Callable[[str, str], None] | None = None,
    ) -> None:
        self.bus = bus
        self.redis = redis
        self.timeout_s = timeout_s
        self.on_handoff = on_handoff

    async def route_of(self, tenant_id: str, session_id: str) -> str | None:
        raw = await self.redis.call("GET", route_key(tenant_id, session_id))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def set_route(self, tenant_id: str, session_id: str, agent: str | None) -> None:
        key = route_key(tenant_id, session_id)
        if agent is None:
            await self.redis.call("DEL", key)
        else:
            await self.redis.call("SET", key, agent, "EX", ROUTE_TTL_S)

    async def forward(self, req: ChatRequest, target: str) -> ChatReply:
        reply: ChatReply = await self.bus.request(
            req,
            ChatReply,
            ChatRequest.subject_for(target),
            timeout=self.timeout_s,
            deadline=req.deadline,  # the target works within what is left
        )
        return reply

    def handed_off(self, source: str, target: str) -> None:
        if self.on_handoff is not None:
            self.on_handoff(source, target)


def transfer_name(target: str) -> str:
    return f"{TRANSFER_PREFIX}{target}"


def transfer_target(name: str, allowed: tuple[str, ...]) -> str | None:
    """The target of a ``transfer_to_<agent>`` call, when the agent may hand off to it."""
    if not name.startswith(TRANSFER_PREFIX):
        return None
    target = name.removeprefix(TRANSFER_PREFIX)
    return target if target in allowed else None


def transfer_definitions(agent: str, targets: tuple[str, ...]) -> list[dict[str, Any]]:
    """One OpenAI tool definition per allowed handoff target."""
    return [
        {
            "type": "function",
            "function": {
                "name": transfer_name(t),
                "description": (
                    f"Hand this conversation to the {t} agent, who will answer the customer's "
                    "message and the following ones. Use it when the request is for that team."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "reason": {"type": "string", "description": "Why, in a few words."}
                    },
                },
            },
        }
        for t in targets
        if t != agent
    ]


def handed_request(req: ChatRequest, source: str, target: str) -> ChatRequest:
    """``req`` as the target agent receives it."""
    return req.model_copy(
        update={"agent": target, "handoff_from": source, "handoff_depth": req.handoff_depth + 1}
    )


def _remote(e: Exception, target: str) -> RemoteError:
    if isinstance(e, RemoteError):
        return e
    if isinstance(e, RequestTimeout):
        return RemoteError("timeout", f"the {target} agent did not answer in time")
    return RemoteError("unavailable", f"cannot reach the {target} agent: {e}")


@dataclass
class Followed:
    """What following a session's route gave: the routed agent's reply, or a note for the LLM."""

    reply: ChatReply | None = None
    notice: str | None = None


async def follow_route(
    router: Router, req: ChatRequest, agent: str, max_handoffs: int, target: str | None
) -> Followed:
    """Forward ``req`` to ``target``, the agent its session is routed to, unless it is ``agent``."""
    if target is None or target == agent:
        return Followed()
    if req.handoff_depth >= max_handoffs:
        log.warning("handoff limit reached: %s answers instead of %s", agent, target)
        return Followed()
    try:
        return Followed(reply=await router.forward(handed_request(req, agent, target), target))
    except NoResponders:
        log.warning("session routed to %s, which has no running instance", target)
        return Followed(
            notice=(
                f"This conversation was handed to the {target} agent, which is not available "
                "right now. Tell the customer so, and help them as well as you can yourself."
            )
        )
    except (RequestTimeout, BusUnavailable, RemoteError) as e:
        raise _remote(e, target) from e


async def transfer(
    router: Router, req: ChatRequest, agent: str, call: ToolCall, target: str, max_handoffs: int
) -> ChatReply | str:
    """Carry out a ``transfer_to_<target>`` call: the target's reply, or a tool error text."""
    if req.handoff_depth >= max_handoffs:
        log.warning("handoff %s -> %s refused: limit of %d reached", agent, target, max_handoffs)
        return (
            f"Error: this message was already handed over {req.handoff_depth} times, the limit. "
            "Do not transfer it again: answer the customer yourself."
        )
    previous = await router.route_of(req.tenant_id, req.session_id)
    await router.set_route(req.tenant_id, req.session_id, target)
    reason = _reason(call.arguments)
    log.info("handing off to %s%s", target, f" ({reason})" if reason else "")
    try:
        reply = await router.forward(handed_request(req, agent, target), target)
    except NoResponders:
        await router.set_route(req.tenant_id, req.session_id, previous)
        log.warning("handoff %s -> %s failed: no running instance", agent, target)
        return (
            f"Error: the transfer failed because no {target} agent is running right now. "
            f"Answer the customer yourself, and explain that the {target} team is not "
            "available at the moment."
        )
    except (RequestTimeout, BusUnavailable, RemoteError) as e:
        raise _remote(e, target) from e
    router.handed_off(agent, target)
    return reply


def _reason(arguments: str) -> str:
    try:
        data = json.loads(arguments or "{}")
    except ValueError:
        return ""
    return str(data.get("reason") or "")[:200] if isinstance(data, dict) else ""
