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

Before a tool acts, the runtime checks its arguments against the caller
(:mod:`chatbus.agent.tool_args`): the model never chooses the tenant, user or customer, and a
record an argument refers to must be the caller's. Tools reach records only through
``ctx.store()``, the caller's own. Money-moving tools draft and wait for the customer's
confirmation (:mod:`chatbus.agent.drafts`).
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

from chatbus.agent.drafts import ConfirmDraft, Drafts, PolicyRefused
from chatbus.agent.ports import Completion, ToolCall
from chatbus.agent.records import Caller, CallerRecords, RecordStore
from chatbus.agent.tool_args import ArgumentRefused, check_declaration, resolve_refs, screen
from chatbus.contracts.chat import ChatRequest
from chatbus.contracts.events import DomainEvent

log = logging.getLogger("chatbus.agent.tools")

PublishEvent = Callable[[DomainEvent], Awaitable[None]]
ToolFn = Callable[[Any, "ToolContext"], Awaitable[Any]]
# Completes a confirmed draft: (the draft record, ctx) -> the fields that change.
ConfirmFn = Callable[[dict[str, Any], "ToolContext"], Awaitable[dict[str, Any]]]


class ToolError(Exception):
    """Raise from a tool for an expected failure; the LLM sees the message as it is."""


@dataclass
class ToolContext:
    """What a running tool may use: who asked, their records, how to announce events."""

    req: ChatRequest
    agent: str
    records: RecordStore | None = None
    publish: PublishEvent | None = None
    drafts: Drafts | None = None
    # Set by run_tool_call for each call: the agent's tools, the one running, and the
    # caller's records its RecordRef arguments named.
    tools: Mapping[str, Tool] = field(default_factory=dict)
    tool: Tool | None = None
    refs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Lines the runtime adds to the reply itself, whatever the model says (a draft's code).
    notices: list[str] = field(default_factory=list)

    @property
    def caller(self) -> Caller:
        """Whom the tool acts for: the request's tenant, session and user."""
        return Caller.of(self.req)

    def origin(self) -> dict[str, Any]:
        """The fields every domain event published from this request carries."""
        return {
            "tenant_id": self.req.tenant_id,
            "session_id": self.req.session_id,
            "user_id": self.req.user_id,
            "source": self.agent,
        }

    def store(self) -> CallerRecords:
        """The caller's own records (reads see nothing else; new ones belong to the caller)."""
        if self.records is None:
            raise ToolError("records are not available right now; try again later")
        return CallerRecords(self.records, self.caller)

    async def propose(
        self, kind: str, record_id: str, data: dict[str, Any], *, amount: float, currency: str
    ) -> dict[str, Any]:
        """Store a money-moving record as a draft the customer confirms in a later message."""
        if self.drafts is None:
            raise ToolError("this cannot be done right now; try again later")
        return await self.drafts.propose(
            self, kind, record_id, data, amount=amount, currency=currency
        )

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
    # Set for a money-moving tool: it only drafts (ctx.propose); this completes the draft
    # once the customer confirmed it.
    on_confirm: ConfirmFn | None = field(default=None, repr=False)

    @classmethod
    def from_function(
        cls,
        fn: ToolFn,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float = 30.0,
        on_confirm: ConfirmFn | None = None,
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
        check_declaration(name or fn.__name__, model)
        return cls(name or fn.__name__, text, model, fn, timeout_s, on_confirm)

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


@typing.overload
def tool(fn: ToolFn) -> Tool: ...


@typing.overload
def tool(
    fn: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    on_confirm: ConfirmFn | None = None,
) -> Callable[[ToolFn], Tool]: ...


def tool(
    fn: ToolFn | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    on_confirm: ConfirmFn | None = None,
) -> Any:
    """Decorator: ``@tool`` or ``@tool(name=..., on_confirm=...)`` turns a function into a Tool."""
    if fn is not None:
        return Tool.from_function(fn, name=name, description=description, on_confirm=on_confirm)

    def wrap(f: ToolFn) -> Tool:
        return Tool.from_function(f, name=name, description=description, on_confirm=on_confirm)

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
    except (ValueError, RecursionError) as e:  # nested past the parser's stack, too
        return (
            f"Error: the arguments for {call.name} are not valid JSON ({e}). "
            "Call it again with a JSON object matching its parameters."
        )
    try:
        screen(call.name, found.args_model, raw)
        args = found.args_model.model_validate(raw)
    except ArgumentRefused as e:
        return f"Error: {e}"
    except ValidationError as e:
        return (
            f"Error: invalid arguments for {call.name}: {describe_errors(e)}. "
            "Fix them and call the tool again."
        )
    started = time.perf_counter()
    ctx.tools, ctx.tool = tools, found
    try:
        store = ctx.store() if ctx.records is not None else None
        ctx.refs = await resolve_refs(call.name, found.args_model, args, store)
        result = await asyncio.wait_for(found.fn(args, ctx), timeout=found.timeout_s)
    except (ToolError, ArgumentRefused, PolicyRefused) as e:
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


async def _confirm(args: ConfirmDraft, ctx: ToolContext) -> dict[str, Any]:
    if ctx.drafts is None:
        raise ToolError("confirmations are not available right now; try again later")
    return await ctx.drafts.confirm(ctx, args.code)


confirm_draft = Tool.from_function(
    _confirm,
    name="confirm_draft",
    description=(
        "Complete a draft (e.g. an invoice) the customer has confirmed: call it only when the "
        "customer's latest message contains the draft's confirmation code."
    ),
)


def with_runtime_tools(tools: tuple[Any, ...]) -> tuple[Any, ...]:
    """``tools`` plus the runtime's own: ``confirm_draft`` when one of them drafts."""
    names = {t.name for t in tools}
    if any(t.on_confirm for t in tools) and confirm_draft.name not in names:
        return (*tools, confirm_draft)
    return tools
