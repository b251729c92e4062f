"""What makes recall work on long conversations between named people: the speaker and the day
in what is indexed, score fusion that keeps the scores, and the learned reranker."""

from __future__ import annotations

import calendar
import time
from pathlib import Path

import pytest

from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import SearchMemory
from chatbus_memory.dates import spans
from chatbus_memory.embedder import LocalEmbedder
from chatbus_memory.engine import Caps, Engine, Incoming
from chatbus_memory.fusion import FusionParams, fuse
from chatbus_memory.rerank import FEATURES, QueryCues, Reranker, features
from chatbus_memory.settings import MemorySettings
from chatbus_memory.store import Candidates, Found
from chatbus_memory.store_edge import EdgeStore
from chatbus_memory.summarize import ExtractiveSummarizer
from chatbus_memory.text import Chunker, SparseEncoder, index_text


def at(day: int, month: int, year: int) -> float:
    return float(calendar.timegm((year, month, day, 14, 0, 0)))


async def engine_with(tmp_path: Path, *, rerank: bool = True) -> tuple[EdgeStore, Engine]:
    """An engine with the service's recall settings on an embedded store."""
    s = MemorySettings(_env_file=None, memory_rerank=rerank)  # type: ignore[call-arg]
    store = EdgeStore(tmp_path / "shard")
    await store.open(384)
    engine = Engine(
        store,
        LocalEmbedder(),
        SparseEncoder(),
        Chunker(),
        ExtractiveSummarizer(),
        caps=Caps(1000, 100),
        fusion=s.fusion(),
        threshold=0.0,
        date_in_sparse=s.memory_date_in_sparse,
        reranker=Reranker.of(s),
    )
    return store, engine


def test_the_indexed_text_carries_the_day_and_the_speaker() -> None:
    turn = Turn(
        role="user", content="I painted a sunrise.", speaker="Melanie", created_at=at(8, 5, 2023)
    )
    assert (
        index_text(turn, turn.content, with_date=True)
        == "[8 May 2023] Melanie: I painted a sunrise."
    )
    assert index_text(turn, turn.content, with_speaker=False) == "I painted a sunrise."


def test_score_fusion_rescales_both_scores_to_one_range() -> None:
    def hit(i: str, score: float) -> Found:
        return Found(i, score, {"text": i})

    cands = Candidates(
        dense=[hit("a", 0.61), hit("b", 0.60), hit("c", 0.20)],
        sparse=[hit("c", 14.0), hit("b", 7.0), hit("d", 0.0)],
        cosine={"d": 0.1},
    )
    ranked = fuse(cands, [], FusionParams(method="convex", alpha=0.5))
    by_id = {r.id: r for r in ranked}
    # b is nearly the best on both scales, so it wins over a (best dense, no BM25) and c
    assert ranked[0].id == "b"
    assert by_id["c"].lexical == 1.0 and by_id["d"].lexical == 0.0 and by_id["a"].lexical == 0.0
    assert all(0.0 <= r.score <= 1.0 for r in ranked)


def test_the_shipped_reranker_matches_its_features_and_prefers_named_speakers_and_dates() -> None:
    rr = Reranker.load()
    assert len(rr.weights) == len(FEATURES)
    cues = QueryCues.of("What did Caroline do in May 2023?")
    assert cues.months == {5} and cues.years == {2023} and "caroline" in cues.words

    def cand(speaker: str, when: float, text: str) -> object:
        from chatbus_memory.fusion import Ranked

        payload = {"speaker": speaker, "created_at": when, "text": text, "session_id": "s"}
        return Ranked(speaker + text, payload, 0.5, 0.5, 0.5, 0.5)

    same = "I went to a support group and it was powerful."
    melanie = cand("Melanie", at(7, 5, 2023), same)
    caroline_june = cand("Caroline", at(9, 6, 2023), same)
    caroline_may = cand("Caroline", at(7, 5, 2023), same)
    rows = features([melanie, caroline_june, caroline_may], cues)  # type: ignore[list-item]
    assert [r[FEATURES.index("speaker_named")] for r in rows] == [0.0, 1.0, 1.0]
    assert [r[FEATURES.index("date_match")] for r in rows] == [1.0, 0.0, 1.0]
    order = rr.rerank([melanie, caroline_june, caroline_may], "What did Caroline do in May 2023?")  # type: ignore[list-item]
    assert order[0] is caroline_may


@pytest.mark.parametrize("rerank", [True, False])
async def test_questions_about_a_person_find_that_persons_turn(
    tmp_path: Path, rerank: bool
) -> None:
    """Two people say the same thing on several days; the question names one of them and a
    month: only the speaker and the day in the index tell the turns apart."""
    store, engine = await engine_with(tmp_path, rerank=rerank)
    same = "I went to a pottery workshop with friends on Saturday."
    said = [
        ("Melanie", at(20, 5, 2023), same),
        ("Caroline", at(15, 4, 2023), same),
        ("Caroline", at(20, 5, 2023), same),
        ("Melanie", at(20, 4, 2023), same),
    ]
    filler = [
        ("Melanie", at(1, 3, 2023), f"Just checking in about the weekend plans, take {i}.")
        for i in range(30)
    ]
    turns = [
        Incoming(
            "t", "conv", f"turn-{i}", Turn(role="user", content=c, speaker=w, created_at=a + i)
        )
        for i, (w, a, c) in enumerate(filler + said)
    ]
    await engine.store_turns(turns, enforce_caps=False)
    q = SearchMemory(
        tenant_id="t", session_id="conv", query="What did Caroline do in May 2023?", k=3
    )
    hits = await engine.search(q)
    await store.close()
    assert hits[0].turn.speaker == "Caroline"
    assert time.gmtime(hits[0].turn.created_at).tm_mon == 5


def test_relative_dates_in_a_query_point_at_spans_before_the_search() -> None:
    now = at(30, 11, 2026)  # a Monday, 14:00 UTC
    [(start, end)] = spans("What did I tell you last May?", now)
    assert (start, end) == (at(1, 5, 2026) - 14 * 3600, at(1, 6, 2026) - 14 * 3600)
    [(start, end)] = spans("and yesterday?", now)
    assert start <= at(29, 11, 2026) < end and not start <= now < end
    [(start, end)] = spans("what was that two weeks ago", now)
    assert start <= at(16, 11, 2026) < end and not start <= at(1, 11, 2026) < end
    assert spans("what is my order number?", now) == []
    cues = QueryCues.of("the invoice I sent last week", now)
    assert cues.matches(at(25, 11, 2026)) == 1.0 and cues.matches(at(10, 11, 2026)) == 0.0


async def test_a_question_about_yesterday_prefers_yesterdays_turn(tmp_path: Path) -> None:
    store, engine = await engine_with(tmp_path)
    now = time.time()
    said = [(now - 10 * n * 86400, f"I sent the invoice for order {n}.") for n in (1, 2, 3)]
    said.append((now - 86400, "I sent the invoice for order 4."))
    said += [(now - 50 * 86400 + i, f"Thanks, talk soon, number {i}.") for i in range(20)]
    await engine.store_turns(
        [
            Incoming("t", "c", f"turn-{i}", Turn(role="user", content=c, created_at=a))
            for i, (a, c) in enumerate(said)
        ],
        enforce_caps=False,
    )
    q = SearchMemory(tenant_id="t", session_id="c", query="Which invoice did I send yesterday?")
    hits = await engine.search(q)
    await store.close()
    assert hits[0].turn.content == "I sent the invoice for order 4."
