"""Keep a prompt within the model's context budget.

History goes first, oldest first; the system messages and the new user message always stay.
Only when they alone exceed the budget is their content cut, from the middle (the start of an
instruction and the end of a question are what matter most), with a visible marker.
"""

from __future__ import annotations

import logging
from typing import Any

from chatbus.agent.ports import Tokens
from chatbus.tokens import REPLY_PRIMING, TOKENS_PER_MESSAGE, TOKENS_PER_NAME

log = logging.getLogger("chatbus.agent.prompt_budget")

MARKER = "\n[... {n} characters cut to fit the context budget ...]\n"


def fit_prompt(
    system: list[dict[str, Any]],
    history: list[dict[str, Any]],
    new: dict[str, Any],
    *,
    budget: int,
    model: str,
    tokens: Tokens,
) -> list[dict[str, Any]]:
    """``system + history + [new]`` cut to at most ``budget`` prompt tokens.

    1. Drop the oldest history messages until the prompt fits (a tool result is never left
       without the assistant message that asked for it).
    2. If system + new still do not fit, cut the middle of the new message's content down to
       what is left (but not below half the budget), then the middle of the longest system
       message. Non-text content is never cut.
    3. If even that cannot fit (a budget smaller than the chat framing), return the shortest
       prompt it got to: the system prompt and the new message are never dropped.

    Token counts follow ``tokens.count_messages`` (OpenAI's chat accounting), so the result
    is what the provider will bill as prompt tokens.
    """
    whole = [*system, *history, new]
    bound = upper_bound(whole)
    if bound is not None and bound <= budget:
        return whole  # surely fits: no need to tokenize
    base = tokens.count_messages([], model)

    def cost(m: dict[str, Any]) -> int:
        return tokens.count_messages([m], model) - base

    fixed = base + sum(cost(m) for m in system) + cost(new)
    costs = [cost(m) for m in history]
    total = fixed + sum(costs)
    start = 0
    while total > budget and start < len(history):
        total -= costs[start]
        start += 1
        while start < len(history) and history[start].get("role") == "tool":
            total -= costs[start]
            start += 1
    if start:
        log.debug("dropped %d oldest history messages to fit %d tokens", start, budget)
    kept = history[start:]
    if total <= budget:
        return [*system, *kept, new]

    # Only system + new are left and they are too long: cut content from the middle.
    new = dict(new)
    system = [dict(m) for m in system]
    over = total - budget
    if isinstance(new.get("content"), str):
        own = cost(new)
        overhead = own - _text_cost(new, model, tokens)
        target = max(own - over, budget // 2, overhead + 1)
        if target < own:
            new["content"] = cut_middle(new["content"], target - overhead, model, tokens)
            over -= own - cost(new)
    for m in sorted(system, key=cost, reverse=True):
        if over <= 0:
            break
        if not isinstance(m.get("content"), str):
            continue
        own = cost(m)
        text_cost = _text_cost(m, model, tokens)
        keep = max(text_cost - over, 0)
        m["content"] = cut_middle(m["content"], keep, model, tokens)
        over -= own - cost(m)
    if over > 0:
        log.warning("prompt is %d tokens over a budget of %d even after cutting", over, budget)
    return [*system, new]


def upper_bound(messages: list[dict[str, Any]]) -> int | None:
    """A cheap upper bound of the prompt tokens of all-text ``messages`` (None otherwise).

    Every token of a byte-level BPE (all of OpenAI's encodings) stands for at least one byte,
    so a text never has more tokens than UTF-8 bytes; the chat framing is added as counted.
    """
    total = REPLY_PRIMING
    for m in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in m.items():
            if value is None:
                continue
            if not isinstance(value, str):
                return None
            total += len(value) if value.isascii() else len(value.encode())
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def _text_cost(m: dict[str, Any], model: str, tokens: Tokens) -> int:
    return tokens.count_text(str(m.get("content") or ""), model)


def cut_middle(text: str, max_tokens: int, model: str, tokens: Tokens) -> str:
    """``text`` with its middle replaced by a marker so that it has at most ``max_tokens``."""
    if tokens.count_text(text, model) <= max_tokens:
        return text
    lo, hi = 0, len(text) // 2  # characters kept at each end
    best = ""
    while lo <= hi:
        keep = (lo + hi) // 2
        cut = len(text) - 2 * keep
        candidate = text[:keep] + MARKER.format(n=cut) + (text[-keep:] if keep else "")
        if tokens.count_text(candidate, model) <= max_tokens:
            best, lo = candidate, keep + 1
        else:
            hi = keep - 1
    return best
