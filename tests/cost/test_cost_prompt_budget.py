"""The prompt stays within the context budget: oldest history goes first, never system or new."""

from __future__ import annotations

import random

import pytest

from chatbus.agent.prompt_budget import fit_prompt, upper_bound
from chatbus.tokens import TokenCounter

MODEL = "gpt-4o-mini"
SYSTEM = [{"role": "system", "content": "You are the support agent of Acme. Be brief."}]
NEW = {"role": "user", "content": "And what about refunds?"}


@pytest.fixture(scope="module")
def tokens() -> TokenCounter:
    return TokenCounter()


def turns(n: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        out.append({"role": "user", "content": f"question {i}: " + "words " * 40})
        out.append({"role": "assistant", "content": f"answer {i}: " + "more words " * 40})
    return out


def test_everything_kept_when_it_fits(tokens: TokenCounter) -> None:
    history = turns(2)
    got = fit_prompt(SYSTEM, history, NEW, budget=3500, model=MODEL, tokens=tokens)
    assert got == [*SYSTEM, *history, NEW]


def test_oldest_history_is_dropped_first(tokens: TokenCounter) -> None:
    history = turns(30)
    budget = 1000
    got = fit_prompt(SYSTEM, history, NEW, budget=budget, model=MODEL, tokens=tokens)
    assert tokens.count_messages(got, MODEL) <= budget
    assert got[0] == SYSTEM[0] and got[-1] == NEW
    kept = got[1:-1]
    assert kept == history[len(history) - len(kept) :]  # a suffix: the newest turns
    assert 0 < len(kept) < len(history)
    # one more message would not have fit
    bigger = history[len(history) - len(kept) - 1 :]
    assert tokens.count_messages([*SYSTEM, *bigger, NEW], MODEL) > budget


def test_a_tool_result_never_loses_its_call(tokens: TokenCounter) -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    result = {"role": "tool", "tool_call_id": "c1", "content": "42 " * 50}
    history = [call, result, *turns(3)]
    budget = tokens.count_messages([*SYSTEM, *turns(3), NEW], MODEL) + 5
    got = fit_prompt(SYSTEM, history, NEW, budget=budget, model=MODEL, tokens=tokens)
    assert got == [*SYSTEM, *turns(3), NEW]


def test_huge_new_message_is_cut_in_the_middle(tokens: TokenCounter) -> None:
    new = {"role": "user", "content": "START " + "blah " * 5000 + " END?"}
    got = fit_prompt(SYSTEM, turns(5), new, budget=500, model=MODEL, tokens=tokens)
    assert tokens.count_messages(got, MODEL) <= 500
    assert got[0] == SYSTEM[0]
    assert len(got) == 2
    assert got[1]["content"].startswith("START")
    assert got[1]["content"].endswith("END?")
    assert "cut to fit the context budget" in got[1]["content"]


def test_huge_system_prompt_is_cut_too_but_kept(tokens: TokenCounter) -> None:
    system = [{"role": "system", "content": "RULES " + "rule " * 5000 + " LAST RULE"}]
    got = fit_prompt(system, [], NEW, budget=400, model=MODEL, tokens=tokens)
    assert tokens.count_messages(got, MODEL) <= 400
    assert got[-1] == NEW  # the short question is untouched
    assert got[0]["content"].startswith("RULES") and got[0]["content"].endswith("LAST RULE")


def test_default_budget_of_3500_holds_for_a_long_session(tokens: TokenCounter) -> None:
    got = fit_prompt(SYSTEM, turns(200), NEW, budget=3500, model=MODEL, tokens=tokens)
    assert 3000 < tokens.count_messages(got, MODEL) <= 3500


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4", "llama3"])
def test_the_quick_bound_never_undercounts(tokens: TokenCounter, model: str) -> None:
    """A prompt is passed through untokenized only when it surely fits: the bound holds."""
    rng = random.Random(7)
    alphabet = "abc xyz 123 .,!? é ß ü 日本語 中文 한국어 🙂🚀 \n\t" + "".join(
        map(chr, range(33, 127))
    )
    for _ in range(300):
        messages = [
            {
                "role": rng.choice(["system", "user", "assistant"]),
                "content": "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 200))),
            }
            for _ in range(rng.randrange(1, 6))
        ]
        if rng.random() < 0.3:
            messages[0]["name"] = "agent_" + str(rng.randrange(1000))
        bound = upper_bound(messages)
        assert bound is not None and bound >= tokens.count_messages(messages, model)
        budget = bound  # exactly at the bound: passed through, and truly within budget
        got = fit_prompt(messages[:-1], [], messages[-1], budget=budget, model=model, tokens=tokens)
        assert tokens.count_messages(got, model) <= budget
    assert upper_bound([{"role": "assistant", "content": None, "tool_calls": [{}]}]) is None
