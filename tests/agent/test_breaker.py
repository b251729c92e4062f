"""The model breaker follows the model's health: many callers, each request once, quick recovery."""

from __future__ import annotations

from typing import Any

import pytest

from chatbus.agent.breaker import Breaker
from chatbus.agent.llm import LLMError
from chatbus.agent.ports import Completion
from chatbus.agent.resilience import ResilientLLM


class Model:
    """A fake model that is up or down, counting the calls it gets."""

    def __init__(self) -> None:
        self.down: LLMError | None = None
        self.calls = 0

    async def complete(self, messages: list[dict[str, Any]], **kw: Any) -> Completion:
        self.calls += 1
        if self.down is not None:
            raise self.down
        return Completion("fine", kw["model"])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def resilient(model: Model, clock: Clock) -> ResilientLLM:
    return ResilientLLM(
        model, retries=2, base_delay_s=0.0, make_breaker=lambda: Breaker(clock=clock, open_s=10)
    )


async def ask(llm: ResilientLLM, caller: str, fallback: str | None = None) -> Completion:
    return await llm.complete(
        [{"role": "user", "content": "hi"}],
        model="main",
        temperature=0,
        agent="a",
        caller=caller,
        fallback_model=fallback,
    )


async def test_one_sessions_failures_do_not_open_the_breaker_for_everyone() -> None:
    model, clock = Model(), Clock()
    llm = resilient(model, clock)
    model.down = LLMError("server", "boom", 500)
    for _ in range(5):  # five failing messages from one session, each retried twice
        with pytest.raises(LLMError):
            await ask(llm, "tenant:session-1")
    assert model.calls == 15
    model.down = None
    assert (await ask(llm, "tenant:session-2")).content == "fine"
    assert not llm.breaker("main").is_open


async def test_bad_input_never_counts_against_the_model() -> None:
    model, clock = Model(), Clock()
    llm = resilient(model, clock)
    model.down = LLMError("client", "prompt too long", 400)
    for i in range(40):
        with pytest.raises(LLMError):
            await ask(llm, f"t:s{i}")
    assert model.calls == 40  # refusals are not retried, and the breaker stays closed
    assert not llm.breaker("main").is_open


async def test_an_outage_opens_it_and_the_first_answered_probe_closes_it() -> None:
    model, clock = Model(), Clock()
    llm = resilient(model, clock)
    model.down = LLMError("server", "down", 503)
    for i in range(20):  # many callers, every request failing: the model is down
        with pytest.raises(LLMError):
            await ask(llm, f"t:s{i}")
    assert llm.breaker("main").is_open
    before = model.calls
    with pytest.raises(LLMError) as refused:
        await ask(llm, "t:other", fallback="secret-fallback")
    assert model.calls == before + 3  # the open breaker spared "main"; the fallback was tried
    assert "secret-fallback" not in str(refused.value) and "main" not in str(refused.value)

    model.down = None  # the model is back
    clock.now += 10  # the breaker lets a probe through
    assert (await ask(llm, "t:probe")).content == "fine"
    assert not llm.breaker("main").is_open  # closed by that one answer, not 30 s later
    assert (await ask(llm, "t:next")).content == "fine"


def test_a_failed_probe_keeps_it_open_and_only_one_probe_runs_at_a_time() -> None:
    clock = Clock()
    b = Breaker(clock=clock, open_s=10, min_requests=2, min_callers=2)
    b.record("closed", failed=True, caller="a")
    b.record("closed", failed=True, caller="b")
    assert b.is_open and b.admit() is None
    clock.now = 10
    assert b.admit() == "probe"
    assert b.admit() is None  # one probe at a time
    b.record("probe", failed=True, caller="c")
    assert b.admit() is None  # reopened for another open_s
    clock.now = 20
    probe = b.admit()
    assert probe == "probe"
    b.abandon(probe)  # the probe's caller left: the next one may probe
    assert b.admit() == "probe"
