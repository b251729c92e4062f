"""What the offline model does without a real LLM: a few plain intents, answered with real tools.

Deterministic rules over the last user message and the tools the agent offers, so a newcomer
without an API key sees handoffs, tool calls and their records work end to end:

- **handoff** — the customer asks for a team by name ("transfer me to sales"), or their words
  fit what the agent's prompt or the tool says another agent is for (buying, pricing → the
  agent the prompt names for that; a problem with an order → the one it names for that): call
  that ``transfer_to_<agent>`` tool;
- **order lookup** — a number of 3+ digits and a tool taking an ``order_id``: call it;
- **ticket** — "ticket", "broken", "refund" ... and a tool named ``open_ticket``: call it;
- after tool results: one reply that says what each tool returned;
- otherwise: the plain offline answer (what it received), saying it is the offline model.
"""

from __future__ import annotations

import json
import re
from typing import Any

TRANSFER = "transfer_to_"
PREFIX = "[offline model]"

# Words that name an intent; a transfer fits an intent when its description, or the sentence of
# the agent's prompt that mentions it, contains one of them.
INTENTS: dict[str, frozenset[str]] = {
    "buying": frozenset(
        "buy buying purchase pricing price prices cost costs quote upgrade plan plans subscribe "
        "subscription enterprise seats discount sales".split()
    ),
    "order problem": frozenset(
        "order orders delivery shipped shipping broken damaged missing refund problem issue "
        "wrong late tracking account".split()
    ),
}
TICKET_WORDS = frozenset("ticket complaint complain broken damaged refund defect".split())
ASK_FOR = re.compile(r"\b(?:transfer|hand|connect|put|send|talk|speak)\w*")
NUMBER = re.compile(r"\b(\d{3,12})\b")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _tools(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for t in body.get("tools") or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn
    return out


def _system(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")


def _scope(name: str, fn: dict[str, Any], system: str) -> set[str]:
    """What a transfer tool is for: its description and the prompt's sentences naming it."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", system) if name in s]
    return _words(" ".join([str(fn.get("description") or ""), *sentences]))


def _handoff(text: str, tools: dict[str, dict[str, Any]], system: str) -> dict[str, Any] | None:
    targets = {n.removeprefix(TRANSFER): n for n in tools if n.startswith(TRANSFER)}
    if not targets:
        return None
    lowered = text.lower()
    for m in ASK_FOR.finditer(lowered):  # "please transfer me to sales"
        for word in lowered[m.end() :].split()[:5]:
            target = word.strip(".,!?;:")
            if target in targets:
                return _call(targets[target], reason=f"the customer asked for {target}")
    said = _words(text)
    for intent, words in INTENTS.items():
        if not said & words:
            continue
        for target, name in targets.items():
            scope = _scope(name, tools[name], system)
            if scope & words & (INTENTS[intent] - {target}):
                return _call(name, reason=f"{intent}: for the {target} team")
    return None


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": arguments}}


def _order_tool(tools: dict[str, dict[str, Any]]) -> str | None:
    for name, fn in tools.items():
        props = (fn.get("parameters") or {}).get("properties") or {}
        required = (fn.get("parameters") or {}).get("required") or []
        if "order_id" in props and set(required) <= {"order_id"} and "lookup" in name:
            return name
    return None


def tool_calls_for(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tool calls the offline model makes for this request, or None to answer in words."""
    messages = body.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return None  # tool results came back (or nothing to answer): answer in words
    text = str(messages[-1].get("content") or "")
    tools = _tools(body)
    if not tools:
        return None
    handoff = _handoff(text, tools, _system(messages))
    if handoff is not None:
        return [handoff]
    calls = []
    number = NUMBER.search(text)
    lookup = _order_tool(tools)
    if number and lookup:
        calls.append(_call(lookup, order_id=number.group(1)))
    if "open_ticket" in tools and _words(text) & TICKET_WORDS:
        args: dict[str, Any] = {
            "title": (text.strip().splitlines() or ["Customer problem"])[0][:120].ljust(3, "."),
            "description": text.strip()[:4000] or "See the conversation.",
            "priority": "normal",
        }
        if number:
            args["order_id"] = number.group(1)
        calls.append(_call("open_ticket", **args))
    return calls or None


def answer_after_tools(messages: list[dict[str, Any]], agent: str) -> str | None:
    """A reply that reports the tool results just received; None when there are none."""
    if not messages or messages[-1].get("role") != "tool":
        return None
    results: list[str] = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        results.append(str(m.get("content") or ""))
    names = []
    for m in reversed(messages):
        if m.get("role") == "assistant" and m.get("tool_calls"):
            names = [str(c.get("function", {}).get("name")) for c in m["tool_calls"]]
            break
    said = [f"{n}: {_summary(r)}" for n, r in zip(names, reversed(results), strict=False)]
    who = agent or "assistant"
    return (
        f"{PREFIX} {who} here. I used my tools — " + "; ".join(said) + ". "
        "(This is the built-in offline model: set OPENAI_API_KEY for real answers.)"
    )


def _summary(result: str) -> str:
    try:
        data = json.loads(result)
    except ValueError:
        return result[:300]
    if isinstance(data, dict):
        shown = {
            k: v
            for k, v in data.items()
            if v not in (None, "", []) and k not in ("kind", "created_at", "updated_at")
        }
        return ", ".join(f"{k} {v}" for k, v in shown.items())[:300]
    return str(data)[:300]
