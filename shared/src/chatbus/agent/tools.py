"""Tools an agent may call: typed async functions whose pydantic argument model is the schema.

::

    class LookupOrder(BaseModel):
        order_id: str = Field(description="The order number, e.g. 4471")

    @tool
    async def lookup_order(args: LookupOrder, ctx: ToolContext) -> dict[str, Any]:
        "Look up an order by its number."
        ...

The runtime offers ``lookup_order.definition()`` to the LLM and runs each call with
:func:`run_tool_call`, which never raises: bad JSON, arguments that fail validation, an unknown
tool name, a tool error or a timeout become a ``role: tool`` error text the LLM can act on.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import time
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from chatbus.agent.ports import Completion, ToolCall
from chatbus.contracts.chat import ChatRequest
from chatbus.contracts.events import DomainEvent

log = logging.getLogger("chatbus.agent.tools")

PublishEvent = Callable[[DomainEvent], Awaitable[None]]
ToolFn = Callable[[Any, "ToolContext"], Awaitable[Any]]


class ToolError(Exception):
    """Raise from a tool for an expected failure; the LLM sees the message as it is."""


class RecordStore:
    """The business records tools create (orders, tickets, leads, invoices), in Redis.

    A record is JSON at ``chatbus:{tenant}:record:{kind}:{id}``, indexed newest-first per
    tenant, per session and per user, so the API can list them.
    """

    def __init__(self, redis: Any) -> None:
        self.redis = redis  # redis.asyncio.Redis

    @staticmethod
    def key(tenant_id: str, kind: str, record_id: str) -> str:
        return f"chatbus:{tenant_id}:record:{kind}:{record_id}"

    @staticmethod
    def index(tenant_id: str, kind: str, by: str = "", value: str = "") -> str:
        base = f"chatbus:{tenant_id}:records:{kind}"
        return f"{base}:{by}:{value}" if by else base

    async def put(
        self,
        tenant_id: str,
        kind: str,
        record_id: str,
        data: dict[str, Any],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Store (or replace) a record; returns it with ``id``, ``kind`` and ``created_at``."""
        now = time.time()
        record = {"id": record_id, "kind": kind, "created_at": now, **data}
        record.update({"session_id": session_id, "user_id": user_id})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.key(tenant_id, kind, record_id), json.dumps(record, default=str))
            pipe.zadd(self.index(tenant_id, kind), {record_id: now})
            if session_id:
                pipe.zadd(self.index(tenant_id, kind, "session", session_id), {record_id: now})
            if user_id:
                pipe.zadd(self.index(tenant_id, kind, "user", user_id), {record_id: now})
            await pipe.execute()
        return record

    async def get(self, tenant_id: str, kind: str, record_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.key(tenant_id, kind, record_id))
        return json.loads(raw) if raw else None

    async def list(
        self,
        tenant_id: str,
        kind: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Newest first, filtered by session or user when given."""
        if session_id:
            index = self.index(tenant_id, kind, "session", session_id)
        elif user_id:
            index = self.index(tenant_id, kind, "user", user_id)
        else:
            index = self.index(tenant_id, kind)
        ids = await self.redis.zrevrange(index, 0, max(0, limit - 1))
        if not ids:
            return []
        keys = [self.key(tenant_id, kind, i.decode() if isinstance(i, bytes) else i) for i in ids]
        return [json.loads(raw) for raw in await self.redis.mget(keys) if raw]


@dataclass
class ToolContext:
    """What a running tool may use: who asked, where records live, how to announce events."""

    req: ChatRequest
    agent: str
    records: RecordStore | None = None
    publish: PublishEvent | None = None

    def origin(self) -> dict[str, Any]:
        """The fields every domain event published from this request carries."""
        return {
            "tenant_id": self.req.tenant_id,
            "session_id": self.req.session_id,
            "user_id": self.req.user_id,
            "source": self.agent,
        }

    def store(self) -> RecordStore:
        if self.records is None:
            raise ToolError("records are not available right now; try again later")
        return self.records

    async def publish_event(self, event: DomainEvent) -> None:
        """Publish ``event`` for the agents that subscribe to it (no-op when not wired)."""
        if self.publish is None:
            log.debug("no event publisher: %s not published", event.subject)
            return
        await self.publish(event)


@dataclass(frozen=True)
class Tool:
    """A function the LLM may call, with its argument model and description."""

    name: str
    description: str
    args_model: type[BaseModel]
    fn: ToolFn = field(repr=False)
    timeout_s: float = 30.0

    @classmethod
    def from_function(
        cls,
        fn: ToolFn,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float = 30.0,
    ) -> Tool:
        """Build a tool from ``async def fn(args: Model, ctx: ToolContext)``."""
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        model = hints.get(params[0]) if params else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{fn.__name__}: the first parameter must be a pydantic model")
        text = description or (fn.__doc__ or "").strip()
        if not text:
            raise TypeError(f"{fn.__name__}: a tool needs a description (or a docstring)")
        return cls(name or fn.__name__, text, model, fn, timeout_s)

    def definition(self) -> dict[str, Any]:
        """The OpenAI tool definition (``{"type": "function", "function": {...}}``)."""
        return _definition(self.name, self.description, self.args_model)


@functools.lru_cache(maxsize=1024)
def _definition(name: str, description: str, args_model: type[BaseModel]) -> dict[str, Any]:
    # Built once per tool: generating a JSON schema costs more than the rest of a message.
    schema = args_model.model_json_schema()
    schema.pop("title", None)
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    }


def tool(
    fn: ToolFn | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Decorator: ``@tool`` or ``@tool(name=..., description=...)`` turns a function into a Tool."""
    if fn is not None:
        return Tool.from_function(fn, name=name, description=description)

    def wrap(f: ToolFn) -> Tool:
        return Tool.from_function(f, name=name, description=description)

    return wrap


def describe_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "arguments"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def render_result(result: Any) -> str:
    """A tool's return value as the text the LLM reads."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    return json.dumps(result, default=str, ensure_ascii=False)


async def run_tool_call(tools: Mapping[str, Tool], call: ToolCall, ctx: ToolContext) -> str:
    """Run one tool call and return the tool message text; never raises."""
    found = tools.get(call.name)
    if found is None:
        names = ", ".join(sorted(tools)) or "none"
        return f"Error: there is no tool named {call.name!r}. Available tools: {names}."
    try:
        raw = json.loads(call.arguments or "{}")
    except ValueError as e:
        return (
            f"Error: the arguments for {call.name} are not valid JSON ({e}). "
            "Call it again with a JSON object matching its parameters."
        )
    try:
        args = found.args_model.model_validate(raw)
    except ValidationError as e:
        return (
            f"Error: invalid arguments for {call.name}: {describe_errors(e)}. "
            "Fix them and call the tool again."
        )
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(found.fn(args, ctx), timeout=found.timeout_s)
    except ToolError as e:
        return f"Error: {e}"
    except TimeoutError:
        log.warning("tool %s timed out after %.0fs", call.name, found.timeout_s)
        return f"Error: {call.name} did not finish within {found.timeout_s:.0f}s."
    except Exception as e:
        log.exception("tool %s failed", call.name)
        return f"Error: {call.name} failed ({type(e).__name__}). Do not retry it blindly."
    log.info(
        "tool called",
        extra={"fields": {"tool": call.name, "ms": round((time.perf_counter() - started) * 1e3)}},
    )
    return render_result(result)


def assistant_tool_calls(completion: Completion) -> dict[str, Any]:
    """The assistant message that asked for ``completion``'s tool calls (before their results)."""
    return {
        "role": "assistant",
        "content": completion.content or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in completion.tool_calls
        ],
    }
