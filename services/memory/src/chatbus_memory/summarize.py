"""Summaries of turns that fall past a session's cap: by the LLM, or extractive without one."""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

from chatbus.contracts.chat import Turn

log = logging.getLogger("chatbus.memory.summarize")

PROMPT = (
    "You compress the early part of a conversation into a memory the assistant can rely on "
    "later. Keep every concrete fact: names, numbers, dates, places, preferences, decisions, "
    "open questions. Write short plain sentences in the third person, at most 150 words."
)

_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.S)


class Summarizer(Protocol):
    async def summarize(self, turns: list[Turn]) -> str: ...


def _who(t: Turn) -> str:
    return t.speaker or t.role


def transcript(turns: list[Turn], max_chars: int = 12_000) -> str:
    lines = [f"{_who(t)}: {t.content.strip()}" for t in turns]
    text = "\n".join(lines)
    return text[-max_chars:]


class ExtractiveSummarizer:
    """No LLM: the first sentence of each turn, user turns first, within a size budget.

    Deterministic, and keeps what users state about themselves (order numbers, names, ...).
    """

    def __init__(self, max_chars: int = 1500, per_turn: int = 200) -> None:
        self.max_chars = max_chars
        self.per_turn = per_turn

    async def summarize(self, turns: list[Turn]) -> str:
        return self.summarize_sync(turns)

    def summarize_sync(self, turns: list[Turn]) -> str:
        head = f"Summary of {len(turns)} earlier turns:"
        picked: list[tuple[int, str]] = []
        budget = self.max_chars - len(head)
        ordered = sorted(range(len(turns)), key=lambda i: (turns[i].role != "user", i))
        for i in ordered:
            t = turns[i]
            text = " ".join(t.content.split())
            m = _FIRST_SENTENCE.match(text)
            sentence = (m.group(1) if m else text)[: self.per_turn]
            line = f"{_who(t)}: {sentence}"
            if len(line) + 1 > budget:
                continue
            budget -= len(line) + 1
            picked.append((i, line))
        picked.sort()
        return "\n".join([head, *(line for _, line in picked)])


def model_client(base_url: str | None, api_key: str | None, timeout: float) -> Any:
    """An OpenAI-compatible client for the memory service's own model calls."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(
        base_url=base_url, api_key=api_key or "unset", max_retries=1, timeout=timeout
    )


async def ask_model(client: Any, model: str, instructions: str, text: str) -> str:
    """One deterministic completion, tagged as the memory service's (for cost reports)."""
    resp = await client.chat.completions.create(
        model=model,
        temperature=0,
        messages=[{"role": "system", "content": instructions}, {"role": "user", "content": text}],
        extra_headers={"X-Chatbus-Agent": "memory"},
    )
    return (resp.choices[0].message.content or "").strip()


class LLMSummarizer:
    """Asks an OpenAI-compatible chat model; falls back to the extractive summary on failure."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str,
        timeout: float = 20.0,
    ) -> None:
        self.model = model
        self.client = model_client(base_url, api_key, timeout)
        self.fallback = ExtractiveSummarizer()

    async def summarize(self, turns: list[Turn]) -> str:
        try:
            text = await ask_model(self.client, self.model, PROMPT, transcript(turns))
            if text:
                return f"Summary of {len(turns)} earlier turns: {text}"
        except Exception as e:
            log.warning("LLM summary failed, using an extractive one: %s", e)
        return self.fallback.summarize_sync(turns)

    async def close(self) -> None:
        await self.client.close()
