"""LoCoMo, a public set of long multi-session conversations, as the memory benches read it.

``data/locomo10.json.gz`` is a compact copy of LoCoMo's ``locomo10.json`` (Maharana et al.,
"Evaluating Very Long-Term Conversational Memory of LLM Agents", ACL 2024; released under
CC BY-NC 4.0 — see ``data/LOCOMO.md``): 10 conversations between two named people over months,
272 sessions with their dates, 5,882 turns (a shared photo is kept as its caption), and the
1,536 questions of categories 1-4 whose evidence names existing turns (category 5, questions with
no answer in the conversation, is left out).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DATA = Path(__file__).parent / "data" / "locomo10.json.gz"

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


@dataclass(frozen=True)
class PublicTurn:
    id: str  # "D3:12": session 3, turn 12
    speaker: str
    text: str
    at: float  # the session's date and time (UTC epoch seconds)


@dataclass(frozen=True)
class PublicQuestion:
    text: str
    answer: str
    evidence: tuple[str, ...]
    category: int


@dataclass(frozen=True)
class PublicConversation:
    id: str
    speakers: tuple[str, str]
    turns: list[PublicTurn]
    questions: list[PublicQuestion]


def session_time(label: str) -> float:
    """``"1:56 pm on 8 May, 2023"`` -> epoch seconds (UTC)."""
    when = datetime.strptime(label.strip(), "%I:%M %p on %d %B, %Y")
    return when.replace(tzinfo=UTC).timestamp()


def load(path: Path = DATA) -> list[PublicConversation]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        raw = json.load(f)
    out = []
    for c in raw:
        turns = [
            PublicTurn(tid, who, text, session_time(s["date"]))
            for s in c["sessions"]
            for tid, who, text in s["turns"]
        ]
        questions = [
            PublicQuestion(q["q"], q["a"], tuple(q["evidence"]), int(q["category"]))
            for q in c["questions"]
        ]
        out.append(PublicConversation(c["id"], tuple(c["speakers"]), turns, questions))
    return out


def split(convs: list[PublicConversation]) -> tuple[list[PublicConversation], ...]:
    """(tune, test): conversations 1-4 may be used to choose settings, 5-10 only to report."""
    return convs[:4], convs[4:]
