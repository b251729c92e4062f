"""Reordering the best fused candidates with a small learned model over cheap features.

Features of a candidate turn for a query: its fused score, cosine and BM25 (each as fused and
rescaled over the candidates), its share of the query's terms, its rank, whether the query names
the turn's speaker (or another speaker), whether a month or year in the query, or a relative
phrase ("yesterday", "last May": :mod:`chatbus_memory.dates`), matches the day the turn was
said, its length, and the score of the turn said right before or after it. A logistic model
over them (weights in ``data/rerank.json``, learned by ``bench/memory/train_rerank.py`` on the
tune split of a public conversation set, never on the split it is evaluated on) scores the top
candidates again. About 4 µs per candidate in Python: no model inference, no I/O.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from chatbus_memory.dates import Span, spans, within
from chatbus_memory.fusion import Ranked
from chatbus_memory.settings import MemorySettings

FEATURES = (
    "fused",
    "cosine",
    "lexical",
    "coverage",
    "inv_rank",
    "speaker_named",
    "other_named",
    "date_match",
    "length",
    "neighbor",
)

# turns stored this close in time belong to the same exchange (a question and its answer)
NEIGHBOR_S = 2.5

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        "january february march april may june july august september october november "
        "december".split()
    )
}
_WORD = re.compile(r"[a-z0-9]+")


def weights_path() -> Path:
    return Path(str(resources.files("chatbus_memory") / "data" / "rerank.json"))


@dataclass(frozen=True)
class QueryCues:
    """What a query says about who and when, parsed once per search."""

    words: frozenset[str]
    months: frozenset[int]
    years: frozenset[int]
    # relative phrases ("yesterday", "last May") as spans of time before the search
    spans: tuple[Span, ...] = ()

    @classmethod
    def of(cls, query: str, now: float | None = None) -> QueryCues:
        words = frozenset(_WORD.findall(query.lower()))
        months = frozenset(_MONTHS[w] for w in words if w in _MONTHS)
        years = frozenset(int(w) for w in words if len(w) == 4 and w[:2] in ("19", "20"))
        return cls(words, months, years, tuple(spans(query, now)))

    def matches(self, at: float) -> float:
        """1 when the turn's time fits what the query says about when, else 0."""
        if self.spans:
            return 1.0 if within(at, list(self.spans)) else 0.0
        if not (self.months or self.years):
            return 0.0
        t = time.gmtime(at)
        month_ok = not self.months or t.tm_mon in self.months
        year_ok = not self.years or t.tm_year in self.years
        return 1.0 if month_ok and year_ok else 0.0


def _first_name(speaker: object) -> str:
    if not isinstance(speaker, str) or not speaker:
        return ""
    found = _WORD.findall(speaker.lower())
    return found[0] if found else ""


def features(cands: list[Ranked], cues: QueryCues) -> list[list[float]]:
    """One feature row per candidate, in :data:`FEATURES` order."""
    speakers = {_first_name(r.payload.get("speaker")) for r in cands} - {""}
    named = speakers & cues.words
    near = _neighbors(cands)
    rows = []
    for rank, r in enumerate(cands):
        me = _first_name(r.payload.get("speaker"))
        date = cues.matches(_at(r))
        text = str(r.payload.get("text", ""))
        rows.append(
            [
                r.score,
                r.similarity,
                r.lexical,
                r.coverage,
                1.0 / (rank + 1),
                1.0 if me and me in named else 0.0,
                1.0 if named and me not in named else 0.0,
                date,
                min(math.log1p(len(text)) / 6.0, 1.5),
                near[rank],
            ]
        )
    return rows


def _neighbors(cands: list[Ranked]) -> list[float]:
    """For each candidate, the best fused score of another one said right before or after it."""
    keyed = sorted(
        range(len(cands)),
        key=lambda i: (str(cands[i].payload.get("session_id")), _at(cands[i])),
    )
    out = [0.0] * len(cands)
    for a, b in itertools.pairwise(keyed):
        ra, rb = cands[a], cands[b]
        same = ra.payload.get("session_id") == rb.payload.get("session_id")
        if same and abs(_at(ra) - _at(rb)) <= NEIGHBOR_S:
            out[a] = max(out[a], rb.score)
            out[b] = max(out[b], ra.score)
    return out


def _at(r: Ranked) -> float:
    return float(r.payload.get("created_at", 0.0))


@dataclass(frozen=True)
class Reranker:
    """A logistic model over :data:`FEATURES`; reorders the first ``depth`` candidates."""

    weights: tuple[float, ...]
    bias: float = 0.0
    depth: int = 30

    @classmethod
    def load(cls, path: Path | None = None, depth: int = 30) -> Reranker:
        data = json.loads((path or weights_path()).read_text())
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"{path}: trained on other features than {FEATURES}")
        return cls(tuple(float(w) for w in data["weights"]), float(data["bias"]), depth)

    @classmethod
    def of(cls, settings: MemorySettings) -> Reranker | None:
        """The shipped reranker when the settings ask for one."""
        return cls.load(depth=settings.memory_rerank_depth) if settings.memory_rerank else None

    def score(self, row: list[float]) -> float:
        return self.bias + sum(w * x for w, x in zip(self.weights, row, strict=True))

    def rerank(self, ranked: list[Ranked], query: str, now: float | None = None) -> list[Ranked]:
        head, tail = ranked[: self.depth], ranked[self.depth :]
        if len(head) < 2:
            return ranked
        rows = features(head, QueryCues.of(query, now))
        order = sorted(range(len(head)), key=lambda i: self.score(rows[i]), reverse=True)
        return [head[i] for i in order] + tail
