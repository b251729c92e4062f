"""The agent handler with small fakes of its ports: what reaches the LLM, what is remembered."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel

from chatbus.agent.handler import AgentConfig, AgentDeps, answer
from chatbus.agent.llm import LLMError
from chatbus.agent.ports import Authorization, Completion, ToolCall
from chatbus.agent.resilience import ResilientLLM
from chatbus.agent.spec import AgentSpec
from chatbus.agent.tools import Tool, ToolContext, ToolError, tool
from chatbus.contracts.chat import ChatReply, ChatRequest, Turn, Usage
from chatbus.errors import NoResponders, RemoteError

SPEC = AgentSpec(
    id="helper",
    label="Helper",
    description="d",
    system_prompt="You are Helper.",
    fallback_model="backup-model",
)


class ScriptedLLM:
    def __init__(self, *results: Completion | LLMError) -> None:
        self.results = list(results)
        self.calls: list[dict[str, Any]] = []

    async def complete(self, messages: list[dict[str, Any]], **kw: Any) -> Completion:
        self.calls.append({"messages": messages, **kw})
        result = self.results.pop(0) if self.results else Completion("ok", kw["model"])
        if isinstance(result, LLMError):
            raise result
        return result


class MemHistory:
    def __init__(self) -> None:
        self.turns: dict[tuple[str, str], list[Turn]] = {}

    async def recent(self, tenant_id: str, session_id: str, n: int) -> list[Turn]:
        return self.turns.get((tenant_id, session_id), [])[-n:]

    async def append(
        self, tenant_id: str, session_id: str, turns: list[Turn], user_id: str | None = None
    ) -> None:
        self.turns.setdefault((tenant_id, session_id), []).extend(turns)


class RecallingMemory:
    def __init__(self, recalled: list[Turn]) -> None:
        self.recalled = recalled
        self.remembered: list[Turn] = []
        self.searches = 0

    async def recall(self, req: ChatRequest, *, k: int, scope: str) -> list[Turn]:
        self.searches += 1
        return self.recalled[:k]

    async def profile(self, req: ChatRequest) -> dict[str, str]:
        return {}

    async def remember(self, req: ChatRequest, turns: list[Turn]) -> None:
        self.remembered.extend(turns)


class Budget:
    def __init__(self, decision: str, model: str = "cheap") -> None:
        self.decision = decision
        self.model = model
        self.recorded: list[tuple[str, Usage]] = []

    async def authorize(
        self, req: ChatRequest, *, model: str, cheap_model: str | None, prompt_tokens: int
    ) -> Authorization:
        return Authorization(decision=self.decision, model=self.model)  # type: ignore[arg-type]

    async def record(
        self,
        req: ChatRequest,
        auth: Authorization,
        *,
        model: str,
        usage: Usage,
        cached: bool,
        counted: bool,
    ) -> None:
        self.recorded.append((model, usage))


def deps(llm: ScriptedLLM, **kw: Any) -> AgentDeps:
    kw.setdefault("spec", SPEC)
    kw.setdefault("config", AgentConfig(model="main-model", temperature=0.1))
    return AgentDeps(llm=ResilientLLM(llm, base_delay_s=0.0), history=MemHistory(), **kw)


def req(message: str, session: str = "s1") -> ChatRequest:
    return ChatRequest(request_id="r1", agent="helper", session_id=session, message=message)


async def test_prompt_has_system_history_and_new_message() -> None:
    llm = ScriptedLLM(
        Completion("first answer", "main-model", Usage(prompt_tokens=5, completion_tokens=2))
    )
    d = deps(llm)
    await answer(req("my name is Ada"), d)
    reply = await answer(req("what is my name?"), d)
    sent = llm.calls[1]["messages"]
    assert sent[0] == {"role": "system", "content": "You are Helper."}
    assert {"role": "user", "content": "my name is Ada"} in sent
    assert {"role": "assistant", "content": "first answer"} in sent
    assert sent[-1] == {"role": "user", "content": "what is my name?"}
    assert reply.agent == "helper" and reply.session_id == "s1"


async def test_recalled_turns_enter_the_prompt_once() -> None:
    memory = RecallingMemory(
        [
            Turn(role="user", content="my order is 4471"),
            Turn(role="user", content="my order is 4471"),
        ]
    )
    llm = ScriptedLLM()
    d = deps(llm, memory=memory)
    older = [Turn(role="user", content=f"turn {i}") for i in range(d.config.history_turns + 1)]
    await d.history.append("default", "s1", older)
    await answer(req("where is my order?"), d)
    system_text = " ".join(m["content"] for m in llm.calls[0]["messages"] if m["role"] == "system")
    assert system_text.count("my order is 4471") == 1
    assert [t.content for t in memory.remembered] == ["where is my order?", "ok"]


async def test_memory_is_searched_only_once_the_session_outgrows_the_recent_history() -> None:
    memory = RecallingMemory([Turn(role="user", content="my order is 4471")])
    llm = ScriptedLLM()
    d = deps(llm, memory=memory, config=AgentConfig(model="m", temperature=0, history_turns=4))
    for i in range(3):  # a new session, then up to four earlier turns: all in the prompt
        await answer(req(f"message {i}"), d)
    assert memory.searches == 0
    assert all("4471" not in str(m["content"]) for m in llm.calls[-1]["messages"])
    await answer(req("message 3"), d)  # six earlier turns: the first two only in memory now
    assert memory.searches == 1
    assert any("4471" in str(m["content"]) for m in llm.calls[-1]["messages"])


async def test_user_wide_memory_is_searched_from_a_users_first_message() -> None:
    memory = RecallingMemory([Turn(role="user", content="my order is 4471")])
    llm = ScriptedLLM()
    d = deps(llm, memory=memory, spec=replace(SPEC, memory_scope="user"))
    first = ChatRequest(
        request_id="r1", agent="helper", session_id="new", message="hi", user_id="ada"
    )
    await answer(first, d)
    assert memory.searches == 1
    await answer(req("hi", session="anonymous"), d)  # no user: only the session counts
    await answer(req("again", session="anonymous"), d)
    assert memory.searches == 1


async def test_retryable_errors_are_retried_then_fallback_model_answers() -> None:
    llm = ScriptedLLM(
        LLMError("server", "503"),
        LLMError("rate_limited", "429"),
        LLMError("timeout", "slow"),
        Completion("from backup", "backup-model"),
    )
    reply = await answer(req("hi"), deps(llm))
    assert reply.reply == "from backup"
    assert [c["model"] for c in llm.calls] == ["main-model"] * 3 + ["backup-model"]


async def test_all_models_failing_is_an_upstream_error() -> None:
    llm = ScriptedLLM(*[LLMError("server", "boom")] * 6)
    with pytest.raises(RemoteError) as e:
        await answer(req("hi"), deps(llm))
    assert e.value.code == "upstream"


async def test_client_error_is_not_retried() -> None:
    llm = ScriptedLLM(LLMError("client", "bad request", 400))
    with pytest.raises(RemoteError):
        await answer(req("hi"), deps(llm))
    assert len(llm.calls) == 1


async def test_hard_budget_answers_with_template_and_no_llm_call() -> None:
    llm = ScriptedLLM()
    costs = Budget("deny")
    reply = await answer(req("hi"), deps(llm, costs=costs))
    assert reply.degraded == "budget"
    assert reply.reply == SPEC.budget_reply
    assert llm.calls == []


async def test_soft_budget_switches_to_the_cheaper_model() -> None:
    llm = ScriptedLLM()
    costs = Budget("downgrade", model="cheap")
    reply = await answer(req("hi"), deps(llm, costs=costs))
    assert llm.calls[0]["model"] == "cheap"
    assert reply.model == "cheap"
    assert costs.recorded[0][0] == "cheap"


# -- tools and handoffs ----------------------------------------------------------------------


class Echo(BaseModel):
    text: str


@tool
async def echo(args: Echo, ctx: ToolContext) -> dict[str, str]:
    """Repeat a text."""
    return {"echo": args.text, "session": ctx.req.session_id}


@tool
async def explode(args: Echo, ctx: ToolContext) -> str:
    """Always fails."""
    raise RuntimeError("database on fire")


@tool
async def refuse(args: Echo, ctx: ToolContext) -> str:
    """Fails the expected way."""
    raise ToolError(f"no record {args.text}")


TOOLED = replace(SPEC, tools=(echo, explode, refuse))


def calls(*names_args: tuple[str, str]) -> Completion:
    return Completion(
        "",
        "main-model",
        tool_calls=[
            ToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(names_args)
        ],
    )


async def test_tool_failures_become_tool_messages_and_the_loop_goes_on() -> None:
    llm = ScriptedLLM(
        calls(
            ("echo", '{"text": "hi"}'), ("explode", '{"text": "x"}'), ("refuse", '{"text": "7"}')
        ),
        Completion("done", "main-model"),
    )
    d = deps(llm)
    d.spec = TOOLED
    reply = await answer(req("go"), d)
    assert reply.reply == "done"
    assert {t["function"]["name"] for t in llm.calls[0]["tools"]} == {"echo", "explode", "refuse"}
    results = [m["content"] for m in llm.calls[1]["messages"] if m["role"] == "tool"]
    assert json.loads(results[0]) == {"echo": "hi", "session": "s1"}
    assert "explode failed (RuntimeError)" in results[1] and "fire" not in results[1]
    assert results[2] == "Error: no record 7"


def test_a_tool_needs_a_model_argument_and_a_description() -> None:
    async def undocumented(args: Echo, ctx: ToolContext) -> str:
        return ""

    async def untyped(args: dict[str, str], ctx: ToolContext) -> str:
        """Untyped."""
        return ""

    with pytest.raises(TypeError, match="description"):
        Tool.from_function(undocumented)
    with pytest.raises(TypeError, match="pydantic model"):
        Tool.from_function(untyped)
    fn = echo.definition()["function"]
    assert fn["parameters"]["required"] == ["text"] and fn["description"] == "Repeat a text."


class Cache:
    def __init__(self) -> None:
        self.stored: list[str] = []

    async def get(
        self, agent: str, model: str, messages: list[dict[str, Any]], *, tenant_id: str = "default"
    ) -> str | None:
        return None

    async def put(
        self,
        agent: str,
        model: str,
        messages: list[dict[str, Any]],
        reply: str,
        *,
        tenant_id: str = "default",
    ) -> None:
        self.stored.append(reply)


async def test_answers_that_needed_a_tool_are_not_cached() -> None:
    cache = Cache()
    d = deps(
        ScriptedLLM(
            calls(("echo", '{"text": "a"}')), Completion("with tool", "m"), Completion("plain", "m")
        ),
        cache=cache,
    )
    d.spec = TOOLED
    await answer(req("one"), d)
    await answer(req("two"), d)
    assert cache.stored == ["plain"]


class Notes:
    async def for_request(self, r: ChatRequest) -> list[str]:
        return ["Sales qualified ACME for enterprise."]


async def test_customer_notes_enter_the_system_prompt() -> None:
    llm = ScriptedLLM()
    d = deps(llm)
    d.notes = Notes()
    await answer(req("hi"), d)
    system = " ".join(m["content"] for m in llm.calls[0]["messages"] if m["role"] == "system")
    assert "Sales qualified ACME for enterprise." in system


class FakeRouter:
    def __init__(self, route: str | None, *, down: bool = False) -> None:
        self.route = route
        self.down = down
        self.forwarded: list[ChatRequest] = []
        self.counted: list[tuple[str, str]] = []

    async def route_of(self, tenant_id: str, session_id: str) -> str | None:
        return self.route

    async def set_route(self, tenant_id: str, session_id: str, agent: str | None) -> None:
        self.route = agent

    async def forward(self, r: ChatRequest, target: str) -> ChatReply:
        if self.down:
            raise NoResponders(target)
        self.forwarded.append(r)
        return ChatReply(
            request_id=r.request_id,
            agent=target,
            session_id=r.session_id,
            reply=f"{target} here",
            handoff_from=r.handoff_from,
        )

    def handed_off(self, source: str, target: str) -> None:
        self.counted.append((source, target))


async def test_a_routed_session_is_forwarded_unless_the_handoff_limit_is_reached() -> None:
    llm = ScriptedLLM()
    d = deps(llm)
    d.router = FakeRouter("sales")
    reply = await answer(req("hi"), d)
    assert (reply.agent, reply.reply, reply.handoff_from) == ("sales", "sales here", "helper")
    assert d.router.forwarded[0].handoff_depth == 1 and llm.calls == []  # type: ignore[attr-defined]
    limited = req("hi").model_copy(update={"handoff_depth": 3})
    reply = await answer(limited, d)
    assert reply.agent == "helper" and len(llm.calls) == 1


async def test_transfer_sets_the_route_and_a_dead_target_leaves_it_unchanged() -> None:
    spec = replace(SPEC, handoffs=("sales",))
    router = FakeRouter(None)
    d = deps(ScriptedLLM(calls(("transfer_to_sales", '{"reason": "pricing"}'))), router=router)
    d.spec = spec
    reply = await answer(req("buy"), d)
    assert reply.agent == "sales" and router.route == "sales"
    assert router.counted == [("helper", "sales")]

    down = FakeRouter(None, down=True)
    llm = ScriptedLLM(calls(("transfer_to_sales", "{}")), Completion("I can help", "m"))
    d = deps(llm, router=down)
    d.spec = spec
    reply = await answer(req("buy"), d)
    assert reply.agent == "helper" and reply.reply == "I can help" and down.route is None
    told = [m["content"] for m in llm.calls[1]["messages"] if m["role"] == "tool"]
    assert "no sales agent is running" in told[0]
