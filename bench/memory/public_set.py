"""LoCoMo, a public set of long multi-session conversations, as the memory benches read it.

LoCoMo's ``data/locomo10.json`` (Maharana et al., "Evaluating Very Long-Term Conversational
Memory of LLM Agents", ACL 2024; CC BY-NC 4.0, in the LoCoMo repository of snap-research) is
not in this repository: its licence is non-commercial, so each user downloads it and points
the benches at it with ``LOCOMO_PATH`` (default ``bench/memory/data/locomo10.json``, ignored
by git). Read from it: 10 conversations between two named people over months, 272 sessions
with their dates, 5,882 turns (a shared photo kept as its caption), and the 1,536 questions of
categories 1-4 whose evidence names existing turns (category 5, questions with no answer in
the conversation, is left out).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DATA = Path(os.environ.get("LOCOMO_PATH") or Path(__file__).parent / "data" / "locomo10.json")

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
    """The conversations and questions of LoCoMo's ``locomo10.json`` at ``path``."""
    if not path.is_file():
        sys.exit(
            f"LoCoMo not found at {path}: download data/locomo10.json from the LoCoMo repository "
            "(snap-research, CC BY-NC 4.0) and set LOCOMO_PATH to it"
        )
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [_conversation(c) for c in raw]


def _conversation(c: dict[str, Any]) -> PublicConversation:
    conv = c["conversation"]
    numbers = sorted(
        int(m[1]) for k in conv if (m := re.fullmatch(r"session_(\d+)", k)) and conv[k]
    )
    turns = [
        PublicTurn(_turn_id(t["dia_id"]), t["speaker"], _text(t), session_time(when))
        for n in numbers
        for when in [conv[f"session_{n}_date_time"]]
        for t in conv[f"session_{n}"]
    ]
    known = {t.id for t in turns}
    questions = []
    for q in c["qa"]:
        if int(q["category"]) not in CATEGORIES:
            continue
        named = (
            _turn_id(e) for item in q.get("evidence", []) for e in re.split(r"[;,\s]+", item) if e
        )
        evidence = tuple(e for e in named if e in known)  # a few ids name no turn: dropped
        if evidence:
            questions.append(
                PublicQuestion(q["question"], str(q["answer"]), evidence, q["category"])
            )
    speakers = (conv["speaker_a"], conv["speaker_b"])
    return PublicConversation(c["sample_id"], speakers, turns, questions)


def _turn_id(raw: str) -> str:
    """``"D30:05"`` -> ``"D30:5"``."""
    session, _, turn = raw.strip().partition(":")
    return f"{session}:{int(turn)}" if turn.strip().isdigit() else raw.strip()


def _text(turn: dict[str, Any]) -> str:
    caption = turn.get("blip_caption")
    return f"{turn['text']} [shares a photo: {caption}]" if caption else str(turn["text"])


def split(convs: list[PublicConversation]) -> tuple[list[PublicConversation], ...]:
    """(tune, test): conversations 1-4 may be used to choose settings, 5-10 only to report."""
    return convs[:4], convs[4:]
