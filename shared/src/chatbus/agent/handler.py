"""The agent handler: one ChatRequest in, one ChatReply out, through the ports only.

Follow the session's route (another agent may own the conversation), recall, assemble the
prompt, check the budget and the cache, then loop LLM -> tool calls -> results -> LLM until a
final answer (at most ``max_tool_steps`` LLM calls), handing off when the LLM calls a
``transfer_to_<agent>`` tool; finally remember.

Everything happens within ``req.deadline``: each step gets what is left, and a request whose
deadline passed (its caller is gone) writes nothing to history, memory or usage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from chatbus.agent.drafts import Drafts
from chatbus.agent.handoff import Router, follow_route, transfer, transfer_definitions
from chatbus.agent.handoff import transfer_target as _target
from chatbus.agent.llm import LLMError
from chatbus.agent.ports import (
    Authorization,
    Completion,
    Costs,
    History,
    Memory,
    ResponseCache,
    StepResults,
    Tokens,
    ToolCall,
)
from chatbus.agent.prompt import build_messages
from chatbus.agent.records import RecordStore
from chatbus.agent.resilience import ResilientLLM
from chatbus.agent.session_state import PortsReader, SessionReader
from chatbus.agent.spec import AgentSpec
from chatbus.agent.tools import (
    PublishEvent,
    Tool,
    ToolContext,
    assistant_tool_calls,
    run_tool_call,
)
from chatbus.contracts.chat import ChatReply, ChatRequest, Turn, Usage
from chatbus.deadline import DeadlineExceeded, after, remaining
from chatbus.errors import RecallSkipped, RemoteError

log = logging.getLogger("chatbus.agent")

Publish = Callable[[str], Awaitable[None]]

# A reply's created_at is its question's plus this: 4 float steps at today's epoch, invisible.
REPLY_AFTER_S = 1e-6


# Tool calls run per model step; the model is untrusted input, and one message must not
# become hundreds of tickets or drafts. Calls past it get TOO_MANY as their result.
MAX_TOOL_CALLS_PER_STEP = 8
TOO_MANY = (
    f"Error: too many tool calls in one step (at most {MAX_TOOL_CALLS_PER_STEP}); "
    "this one was not run."
)


@dataclass
class AgentConfig:
    """Per-deployment knobs (from the agent service's settings)."""

    model: str
    temperature: float
    history_turns: int = 10
    memory_k: int = 5
    context_budget: int = 3500
    cache_enabled: bool = True
    max_tool_steps: int = 6
    # Per message: how many times it may be handed from agent to agent.
    max_handoffs: int = 3
    handoff_timeout_s: float = 25.0
    # The budget of a message that came without a deadline (an older sender).
    default_deadline_s: float = 60.0
    # Writes (history, memory, usage) start only with this much of the deadline left.
    write_margin_s: float = 0.05
    step_limit_reply: str = (
        "I'm sorry — I could not finish working on this request. Please try again, or "
        "rephrase it more simply."
    )


class Notes(Protocol):
    """Facts about the customer that other agents' events left (the handler shows them)."""

    async def for_request(self, req: ChatRequest) -> list[str]: ...


@dataclass
class AgentDeps:
    spec: AgentSpec
    config: AgentConfig
    llm: ResilientLLM
    history: History
    memory: Memory | None = None
    costs: Costs | None = None
    cache: ResponseCache | None = None
    tokens: Tokens | None = None
    router: Router | None = None
    records: RecordStore | None = None
    drafts: Drafts | None = None  # money-moving tools' drafts awaiting confirmation
    notes: Notes | None = None
    publish_event: PublishEvent | None = None
    # Reads route, recent turns and notes at once; None: through the separate ports.
    session: SessionReader | None = None
    # Model answers of earlier attempts of the same request (retries pay once).
    steps: StepResults | None = None
    _tooling: Tooling | None = field(default=None, init=False, repr=False)

    def reader(self) -> SessionReader:
        return self.session or PortsReader(self.history, self.router, self.notes)

    def tooling(self) -> Tooling:
        """The spec's tools and handoffs as the model sees them: built once, not per message."""
        built = self._tooling
        routed = self.router is not None
        if built is None or built.spec is not self.spec or built.routed != routed:
            built = Tooling.of(self.spec, routed=routed)
            self._tooling = built
        return built


@dataclass(frozen=True)
class Tooling:
    spec: AgentSpec
    routed: bool
    tools: dict[str, Tool]
    handoffs: tuple[str, ...]
    definitions: list[dict[str, Any]]

    @classmethod
    def of(cls, spec: AgentSpec, *, routed: bool) -> Tooling:
        handoffs = spec.handoffs if routed else ()
        definitions = [t.definition() for t in spec.tools]
        definitions += transfer_definitions(spec.id, handoffs)
        return cls(spec, routed, {t.name: t for t in spec.tools}, handoffs, definitions)


def fit(
    deps: AgentDeps,
    system: list[dict[str, Any]],
    history: list[dict[str, Any]],
    new: dict[str, Any],
    model: str,
) -> list[dict[str, Any]]:
    """Keep the prompt within the context budget, dropping the oldest history first."""
    if deps.tokens is None:
        return [*system, *history, new]
    from chatbus.agent.prompt_budget import fit_prompt

    return fit_prompt(
        system, history, new, budget=deps.config.context_budget, model=model, tokens=deps.tokens
    )


async def answer(req: ChatRequest, deps: AgentDeps, on_delta: Publish | None = None) -> ChatReply:
    """Answer ``req``: route, recall, assemble the prompt, budget, LLM and tools, remember."""
    spec, cfg = deps.spec, deps.config
    if req.deadline is None:
        req = req.model_copy(update={"deadline": after(cfg.default_deadline_s)})
    notice = None
    state = await deps.reader().load(req, cfg.history_turns)
    if deps.router is not None and state.route not in (None, spec.id):
        followed = await follow_route(deps.router, req, spec.id, cfg.max_handoffs, state.route)
        if followed.reply is not None:
            return followed.reply
        notice = followed.notice
    recalled: list[Turn] = []
    profile: dict[str, str] = {}
    memory_skipped = False
    if deps.memory is not None:  # no tasks to gather when there is nothing to ask
        (recalled, recall_skipped), (profile, profile_skipped) = await asyncio.gather(
            _recall(req, deps, state.older, state.user_older), _profile(req, deps)
        )
        memory_skipped = recall_skipped or profile_skipped
    degraded = "memory" if memory_skipped else None  # still answered, without long-term memory
    system, history, new = build_messages(
        spec.system_prompt, recalled, state.recent, req.message, profile
    )
    system.extend(_context(state.notes, notice))
    model = cfg.model
    messages = fit(deps, system, history, new, model)

    auth = Authorization(decision="allow", model=model)
    if deps.costs is not None:
        prompt_tokens = deps.tokens.count_messages(messages, model) if deps.tokens else 0
        auth = await deps.costs.authorize(
            req, model=model, cheap_model=spec.cheap_model, prompt_tokens=prompt_tokens
        )
        if auth.decision == "deny":
            return await _finish(
                req,
                deps,
                spec.budget_reply,
                model,
                Usage(),
                auth,
                degraded="budget",
                on_delta=on_delta,
            )
        if auth.decision == "downgrade" and auth.model != model:
            model = auth.model
            messages = fit(deps, system, history, new, model)

    if deps.cache is not None and cfg.cache_enabled:
        cached = await deps.cache.get(spec.id, model, messages, tenant_id=req.tenant_id)
        if cached is not None:
            return await _finish(req, deps, cached, model, Usage(), auth, cached=True,
                                 on_delta=on_delta, degraded=degraded)  # fmt: skip

    run = _Run(req, deps, model, on_delta)
    run.first_step, run.first_step_known = state.first_step, state.looked_up_first_step
    outcome = await run.converse(messages)
    if isinstance(outcome, ChatReply):  # handed off: the target answered and remembered
        if deps.costs is not None and run.calls:
            await deps.costs.record(
                req, auth, model=run.model, usage=run.usage, cached=False, counted=run.counted
            )
        return outcome
    if outcome is None:
        log.warning("no final answer within %d LLM calls", cfg.max_tool_steps)
        text, used = cfg.step_limit_reply, run.usage
        return await _finish(req, deps, text, run.model, used, auth, degraded="tool_steps",
                             counted=run.counted, on_delta=on_delta)  # fmt: skip
    if deps.cache is not None and cfg.cache_enabled and outcome and run.calls == 1:
        # Only answers that needed no tool: a tool's result (or effect) must not be replayed.
        await deps.cache.put(spec.id, model, messages, outcome, tenant_id=req.tenant_id)
    return await _finish(req, deps, outcome, run.model, run.usage, auth, counted=run.counted,
                         degraded=degraded, step=run.unsaved, replayed=run.replayed)  # fmt: skip


async def _recall(
    req: ChatRequest, deps: AgentDeps, older: bool, user_older: bool
) -> tuple[list[Turn], bool]:
    """Recalled turns, and whether memory was skipped (it did not answer in its budget).

    Searched only when there can be something outside the prompt (``older``: the session
    has turns memory holds beyond its recent history — an imported or expired past, a long
    session): a new or short session never searches. With ``memory_scope="user"`` the user's
    other sessions count too (``user_older``).
    """
    if deps.memory is None or deps.config.memory_k <= 0:
        return [], False
    user_wide = deps.spec.memory_scope == "user" and req.user_id is not None and user_older
    if not older and not user_wide:
        return [], False
    try:
        found = await deps.memory.recall(req, k=deps.config.memory_k, scope=deps.spec.memory_scope)
    except RecallSkipped:
        return [], True
    return found, False


async def _profile(req: ChatRequest, deps: AgentDeps) -> tuple[dict[str, str], bool]:
    """The user's profile, and whether memory was skipped (it did not answer in its budget)."""
    if deps.memory is None or req.user_id is None:
        return {}, False
    try:
        return await deps.memory.profile(req), False
    except RecallSkipped:
        return {}, True


def _context(notes: list[str], notice: str | None) -> list[dict[str, Any]]:
    extra = []
    if notes:
        lines = "\n".join(f"- {n}" for n in notes)
        extra.append({"role": "system", "content": f"What we know about this customer:\n{lines}"})
    if notice:
        extra.append({"role": "system", "content": notice})
    return extra


class _Run:
    """One message's conversation with the LLM: calls, tool results, summed usage."""

    def __init__(self, req: ChatRequest, deps: AgentDeps, model: str, on_delta: Any) -> None:
        self.req, self.deps, self.on_delta = req, deps, on_delta
        self.requested = self.model = model  # the model asked for / the one that answered
        spec = deps.spec
        tooling = deps.tooling()
        self.tools, self.handoffs, self.definitions = (
            tooling.tools,
            tooling.handoffs,
            tooling.definitions,
        )
        self.ctx = ToolContext(req, spec.id, deps.records, deps.publish_event, deps.drafts)
        self.usage = Usage()
        self.calls = 0
        self.counted = False
        # Step 0 of an earlier attempt, when the session read already looked it up.
        self.first_step: Completion | None = None
        self.first_step_known = False
        # The final step's answer, kept with the reply's other writes (one Redis round trip)
        self.unsaved: tuple[int, Completion] | None = None
        # The final answer came from an earlier attempt that also wrote its turns.
        self.replayed = False

    async def converse(self, messages: list[dict[str, Any]]) -> str | ChatReply | None:
        """The final text, the reply of the agent it handed off to, or None past the limit."""
        convo = list(messages)
        for step in range(self.deps.config.max_tool_steps):
            completion = await self._complete(convo, step)
            if not completion.tool_calls:
                return await self._with_notices(completion.content)
            for i, call in enumerate(completion.tool_calls):
                call.id = call.id or f"call_{step}_{i}"
            convo.append(assistant_tool_calls(completion))
            for n, call in enumerate(completion.tool_calls):
                result = await self._call(call) if n < MAX_TOOL_CALLS_PER_STEP else TOO_MANY
                if isinstance(result, ChatReply):
                    return result
                convo.append({"role": "tool", "tool_call_id": call.id, "content": result})
        return None

    async def _with_notices(self, text: str) -> str:
        """The answer plus what the runtime itself must tell the customer (e.g. a draft's code)."""
        if not self.ctx.notices:
            return text
        extra = "\n\n" + "\n".join(self.ctx.notices)
        if self.on_delta is not None:
            await self.on_delta(extra)
        return text + extra

    async def _call(self, call: ToolCall) -> str | ChatReply:
        target = _target(call.name, self.handoffs)
        if target is None or self.deps.router is None:
            return await run_tool_call(self.tools, call, self.ctx)
        cfg = self.deps.config
        return await transfer(
            self.deps.router, self.req, self.deps.spec.id, call, target, cfg.max_handoffs
        )

    async def _complete(self, convo: list[dict[str, Any]], step: int) -> Completion:
        deps, spec = self.deps, self.deps.spec
        started = time.perf_counter()
        reused = await self._earlier(step)
        if reused is not None:
            completion = reused
            self.replayed = reused.answered and not reused.tool_calls
            if self.on_delta is not None and completion.content:
                await self.on_delta(completion.content)
        else:
            completion = await self._ask_model(convo)
            if deps.steps is not None and not completion.tool_calls:
                self.unsaved = (step, completion)  # the answer: kept by _finish, with history
            elif deps.steps is not None:
                await deps.steps.put(self.req, spec.id, step, completion)
        log.debug("llm answered in %.1f ms", (time.perf_counter() - started) * 1000)
        self.calls += 1
        self.model = completion.model
        usage = completion.usage
        if usage is None:
            self.counted = True
            tokens = deps.tokens
            usage = Usage(
                prompt_tokens=tokens.count_messages(convo, completion.model) if tokens else 0,
                completion_tokens=(
                    tokens.count_text(completion.content, completion.model) if tokens else 0
                ),
            )
        self.usage = Usage(
            prompt_tokens=self.usage.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens + usage.completion_tokens,
        )
        return completion

    async def _earlier(self, step: int) -> Completion | None:
        """What an earlier attempt of this request got from the model at ``step``."""
        steps = self.deps.steps
        if steps is None:
            return None
        if step == 0 and self.first_step_known:
            if self.first_step is not None:
                steps.reused(self.deps.spec.id, step)
            return self.first_step
        return await steps.get(self.req, self.deps.spec.id, step)

    async def _ask_model(self, convo: list[dict[str, Any]]) -> Completion:
        deps, spec = self.deps, self.deps.spec
        try:
            return await deps.llm.complete(
                convo,
                model=self.requested,
                temperature=deps.config.temperature,
                agent=spec.id,
                tools=self.definitions or None,
                on_delta=self.on_delta,
                fallback_model=spec.fallback_model,
                deadline=self.req.deadline,
                caller=f"{self.req.tenant_id}:{self.req.session_id}",
            )
        except LLMError as e:
            if e.kind == "timeout":
                raise RemoteError("timeout", "the model did not answer in time") from e
            if e.kind in {"connection", "unavailable", "interrupted"}:
                raise RemoteError("unavailable", e.message) from e
            raise RemoteError("upstream", e.message) from e


async def _finish(
    req: ChatRequest,
    deps: AgentDeps,
    text: str,
    model: str,
    usage: Usage,
    auth: Authorization,
    *,
    degraded: str | None = None,
    cached: bool = False,
    counted: bool = False,
    on_delta: Publish | None = None,
    step: tuple[int, Completion] | None = None,
    replayed: bool = False,
) -> ChatReply:
    """Write history, memory, usage (and the model's final ``step``, for a redelivery to
    reuse) together, then the reply."""
    if remaining(req.deadline, 1.0) <= deps.config.write_margin_s:
        if step is not None and deps.steps is not None:  # a retry with time left reuses it
            await deps.steps.put(req, deps.spec.id, *step)
        # Nobody waits for this answer any more: it must leave no trace (no history copy).
        raise DeadlineExceeded(f"request {req.request_id} abandoned at its deadline")
    if replayed:  # delivered again after it was answered: its turns and usage are written
        return _reply(req, deps, text, model, usage, degraded, cached)
    now = time.time()
    turns = [
        Turn(role="user", content=req.message, created_at=now, speaker=req.user_id),
        # Strictly after its question, so every store lists a turn's two messages in order.
        Turn(role="assistant", content=text, created_at=now + REPLY_AFTER_S, agent=deps.spec.id),
    ]
    # History, memory and usage are independent writes: do them together.
    writes = [deps.history.append(req.tenant_id, req.session_id, turns, req.user_id)]
    if deps.memory is not None:
        writes.append(deps.memory.remember(req, turns))
    if deps.costs is not None and degraded != "budget":
        writes.append(
            deps.costs.record(req, auth, model=model, usage=usage, cached=cached, counted=counted)
        )
    if step is not None and deps.steps is not None:
        writes.append(deps.steps.put(req, deps.spec.id, step[0], replace(step[1], answered=True)))
    # All or nothing: a deadline reached mid-way must not leave half the writes done.
    await asyncio.shield(asyncio.gather(*writes))
    if on_delta is not None and (cached or degraded not in (None, "memory")):
        await on_delta(text)  # nothing was streamed: send the whole reply as one chunk
    return _reply(req, deps, text, model, usage, degraded, cached)


def _reply(
    req: ChatRequest,
    deps: AgentDeps,
    text: str,
    model: str,
    usage: Usage,
    degraded: str | None,
    cached: bool,
) -> ChatReply:
    return ChatReply(
        request_id=req.request_id,
        agent=deps.spec.id,
        session_id=req.session_id,
        reply=text,
        model=model,
        usage=usage,
        handoff_from=req.handoff_from,
        degraded=degraded,
        cached=cached,
    )
