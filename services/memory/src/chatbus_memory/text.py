"""Text preparation: chunking long turns, the text that gets indexed, BM25 sparse vectors."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import qdrant_edge
from tokenizers import Tokenizer

from chatbus.contracts.chat import Turn
from chatbus_memory.embedder import tokenizer_path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Sparse:
    indices: list[int]
    values: list[float]


class Chunker:
    """Splits a long text into chunks of about ``size`` word-piece tokens at sentence ends.

    Short texts (the usual chat turn) are one chunk and are not even tokenized.
    """

    def __init__(self, size: int = 160, max_size: int = 200) -> None:
        self.size = size
        self.max_size = max(max_size, size)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path()))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def split(self, text: str) -> list[str]:
        text = text.strip()
        if len(text) <= 3 * self.size:  # under ~size tokens whatever the language
            return [text]
        sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
        counts = [
            len(e.ids) for e in self.tokenizer.encode_batch(sentences, add_special_tokens=False)
        ]
        if sum(counts) <= self.max_size:
            return [text]
        chunks: list[str] = []
        cur: list[str] = []
        cur_n = 0
        for sentence, n in zip(sentences, counts, strict=True):
            if n > self.max_size:
                if cur:
                    chunks.append(" ".join(cur))
                    cur, cur_n = [], 0
                chunks.extend(self._split_words(sentence))
                continue
            if cur and cur_n + n > self.size:
                chunks.append(" ".join(cur))
                cur, cur_n = [], 0
            cur.append(sentence)
            cur_n += n
        if cur:
            chunks.append(" ".join(cur))
        return chunks

    def _split_words(self, sentence: str) -> list[str]:
        enc = self.tokenizer.encode(sentence, add_special_tokens=False)
        out: list[str] = []
        start = 0
        for i in range(self.size, len(enc.offsets), self.size):
            cut = enc.offsets[i][0]
            # move the cut back to a space so words stay whole
            space = sentence.rfind(" ", start, cut)
            cut = space if space > start else cut
            out.append(sentence[start:cut].strip())
            start = cut
        out.append(sentence[start:].strip())
        return [c for c in out if c]


def day_label(at: float) -> str:
    """``8 May 2023``: the day a turn was said, as people write it in questions."""
    d = time.gmtime(at)
    return f"{d.tm_mday} {_MONTHS[d.tm_mon - 1]} {d.tm_year}"


_MONTHS = (
    "January February March April May June July August September October November December"
).split()


def index_text(
    turn: Turn, chunk: str, *, with_speaker: bool = True, with_date: bool = False
) -> str:
    """What is embedded and indexed for a chunk: ``[8 May 2023] Caroline: text``.

    The speaker's name helps questions about a person, the day questions about a time.
    """
    if with_speaker and turn.speaker:
        chunk = f"{turn.speaker}: {chunk}"
    if with_date and turn.created_at > 0:
        chunk = f"[{day_label(turn.created_at)}] {chunk}"
    return chunk


class SparseEncoder:
    """BM25 as sparse vectors: term-frequency weights here, IDF computed by the vector store.

    Uses Qdrant's own BM25 tokenizer (English stemming and stopwords), so the embedded engine and
    a Qdrant server score alike.
    """

    def __init__(self, *, k: float = 1.2, b: float = 0.75, avg_len: float = 20.0) -> None:
        self.model = qdrant_edge.Bm25(qdrant_edge.Bm25Config(k=k, b=b, avg_len=avg_len))

    def document(self, text: str) -> Sparse:
        v = self.model.embed_document(text)
        return Sparse(list(v.indices), list(v.values))

    def query(self, text: str) -> Sparse:
        v = self.model.embed_query(text)
        return Sparse(list(v.indices), list(v.values))
