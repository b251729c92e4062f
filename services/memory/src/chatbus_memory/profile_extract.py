"""Facts users state about themselves, taken from their turns: the profile's input port.

Two implementations of :class:`FactExtractor`:

- :class:`PatternExtractor` (offline, deterministic): a few English patterns, "my name is ...",
  "I live in / moved to ...", "I speak ...", "I'm on the ... plan", "I work at ...",
  "I prefer ...". A cheap first test skips the usual turn in about a microsecond.
- :class:`LLMExtractor` (when a real model is configured): asks the model for a JSON object of
  facts, for turns that pass the same cheap first-person test; falls back to the patterns.

Only the user's own turns are read; what the assistant says is never a fact about the user.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Protocol

from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import MAX_FACT_CHARS, PROFILE_KEY
from chatbus_memory.settings import MemorySettings
from chatbus_memory.summarize import ask_model, model_client

log = logging.getLogger("chatbus.memory.profile")

Facts = dict[str, str]

# a turn can only state a fact about its author if it talks in the first person
_FIRST_PERSON = re.compile(r"\b(?:my|i|i'm|im|i've|call me)\b", re.I)
# words every pattern below needs: most turns are skipped on this one test
_GATE = (
    "name call live living based reside moved relocated from speak language tongue reply "
    "answer respond talk write plan work prefer rather"
).split()

_NAME = r"([A-Z][\w'\-]+(?:\s+[A-Z][\w'\-]+){0,2})"
_PLACE = r"([A-Z][\w'\-.]+(?:[ \-](?:[A-Z][\w'\-.]+|de|da|do|del|am|on|upon))*)"
_WORD = r"([A-Za-z][\w\-+ ]{0,38}?)"
_END = r"(?=\s*(?:[.,;!?)]|$|\s+(?:and|but|now|since|because|for|with|so|too)\b))"


def _lead(phrases: str) -> str:
    """The words before a fact, in any letter case ("My name is", "i live in")."""
    return rf"\b(?i:{phrases})\s+"


PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("name", re.compile(_lead(r"my name(?:'s| is)|call me|i am called|i'm called") + _NAME)),
    (
        "city",
        re.compile(
            _lead(
                r"i (?:live|am living|'m living|'m based|am based|reside) in|"
                r"i(?:'ve| have)? (?:just |recently )?(?:moved|relocated) to"
            )
            + _PLACE
        ),
    ),
    ("hometown", re.compile(_lead(r"i(?: am|'m) (?:originally )?from") + _PLACE)),
    (
        "language",
        re.compile(
            _lead(
                r"i (?:only |mostly )?speak|my (?:native |first |mother )?(?:language|tongue) is|"
                r"(?:reply|answer|respond|talk to me|write to me) (?:only )?in"
            )
            + r"(English|[A-Z][a-z]+(?:ese|ish|ian|ic|ch|an|ew|ai|i|k))\b"
        ),
    ),
    (
        "plan",
        re.compile(
            _lead(
                r"i(?:'m| am) on|i (?:have|use|pay for)|"
                r"i(?:'ve| have)? (?:just )?(?:upgraded|downgraded|switched) to"
            )
            + r"(?:the |a |an |our )?([A-Za-z][\w\-+]{0,30})(?= plan\b| tier\b| subscription\b)"
            + r"|\b(?i:my plan is)\s+(?:the )?([A-Za-z][\w\-+]{0,30})"
        ),
    ),
    ("company", re.compile(_lead(r"i work (?:at|for)") + _PLACE)),
    ("preference", re.compile(_lead(r"i (?:prefer|always prefer|'d rather have)") + _WORD + _END)),
]

_NOT_A_NAME = {"sure", "not", "sorry", "here", "fine", "good", "back", "new", "ok", "okay"}


class FactExtractor(Protocol):
    name: str

    async def extract(self, turns: list[Turn]) -> list[Facts]:
        """The facts each turn states about its author (``{}`` for most turns)."""
        ...


def _clean(value: str) -> str:
    value = " ".join(value.split()).strip(" .,'\"")
    return value[:MAX_FACT_CHARS]


def pattern_facts(text: str) -> Facts:
    low = text.lower()
    if not any(w in low for w in _GATE) or not _FIRST_PERSON.search(text):
        return {}
    out: Facts = {}
    for key, pattern in PATTERNS:
        if key in out:
            continue
        m = pattern.search(text)
        if m is None:
            continue
        value = _clean(next(g for g in m.groups() if g))
        if not value or value.lower() in _NOT_A_NAME:
            continue
        out[key] = value.lower() if key == "plan" else value
    return out


class PatternExtractor:
    """Offline: a few deterministic English patterns (see the module's docstring)."""

    name = "patterns"

    async def extract(self, turns: list[Turn]) -> list[Facts]:
        return [pattern_facts(t.content) if t.role == "user" else {} for t in turns]


PROMPT = (
    "Extract stable facts the user states about themselves in this message: name, city "
    "(where they live now), hometown, language, plan (their subscription), company, "
    "preference, or another short fact name in snake_case. Ignore questions, hypotheticals and "
    "facts about other people. Answer with one JSON object of strings, {} when there is none."
)


class LLMExtractor:
    """A chat model reads first-person user turns; the patterns answer when it fails."""

    name = "model"

    def __init__(
        self, *, base_url: str | None, api_key: str | None, model: str, timeout: float = 10.0
    ) -> None:
        self.model = model
        self.client = model_client(base_url, api_key, timeout)

    async def extract(self, turns: list[Turn]) -> list[Facts]:
        out: list[Facts] = []
        for t in turns:
            if t.role != "user" or not _FIRST_PERSON.search(t.content):
                out.append({})
                continue
            out.append(await self._ask(t.content))
        return out

    async def _ask(self, text: str) -> Facts:
        try:
            answer = await ask_model(self.client, self.model, PROMPT, text[:4000])
            return parse_facts(answer)
        except Exception as e:
            log.warning("model fact extraction failed, using the patterns: %s", type(e).__name__)
            return pattern_facts(text)


def parse_facts(answer: str) -> Facts:
    """The model's JSON object, keeping only well-formed string facts (the model is untrusted)."""
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end <= start:
        return {}
    try:
        raw = json.loads(answer[start : end + 1])
    except json.JSONDecodeError:
        return {}
    if not isinstance(raw, dict):
        return {}
    out: Facts = {}
    for key, value in list(raw.items())[:20]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(PROFILE_KEY, str(key)):
            continue
        value = _clean(value)
        if value:
            out[str(key)] = value
    return out


def make_extractor(settings: MemorySettings) -> FactExtractor:
    """The model reads user turns when one is configured (and allowed), else the patterns."""
    has_model = bool(settings.openai_base_url or settings.openai_api_key)
    if settings.memory_profiles == "model" or (settings.memory_profiles == "auto" and has_model):
        return LLMExtractor(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            model=settings.summary_model,
            timeout=settings.summary_timeout_s,
        )
    return PatternExtractor()
