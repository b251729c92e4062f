"""One deadline per message: a slow or failing model costs the user the deadline, never more,
and the abandoned work stops -- no late model calls, no copies in the session's history."""

from __future__ import annotations

import time

import aiohttp

from chatbus_dev.offline_llm import Scripted
from tests.faults.conftest import TimedLLM, running_agent, sample, spec_for, until
from tests.gateway.gw_harness import StartGateway


async def post(http: aiohttp.ClientSession, url: str, agent: str, message: str, session: str):
    async with http.post(
        f"{url}/api/chat/{agent}", json={"message": message, "session_id": session}
    ) as r:
        return r.status, await r.json()


async def test_a_model_slower_than_the_deadline_gives_a_timely_504_and_leaves_no_trace(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    llm, url = model
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=1.5)
    # LLM_TIMEOUT_S is far above the gateway's wait, as in the reported fault (60 s vs 30 s).
    async with running_agent(spec, nats_url, redis_url, url, llm_timeout_s=60, llm_retries=5) as rt:
        llm.push(*[Scripted(content="too late", delay_s=3.0)] * 6)
        started = time.monotonic()
        status, body = await post(http, gateway.url, spec.id, "What is my balance?", f"s{uid}")
        took = time.monotonic() - started
        assert status == 504, body
        assert took < 1.5 + 2.0, f"the user waited {took:.1f}s for a 1.5s deadline"

        def stopped() -> bool:
            return any(
                sample(rt.registry, "chatbus_messages_total", agent=spec.id, outcome=o) > 0
                for o in ("timeout", "abandoned")
            )

        await until(stopped)  # the agent gave the message up ...
        assert len(llm.arrived) == 1  # ... after one attempt: none started past the deadline

        llm.script.clear()
        status, body = await post(http, gateway.url, spec.id, "Hello again", f"s{uid}")
        assert status == 200, body
    follow_up = llm.requests_for(spec.id)[-1].messages
    # The abandoned turn left no copy in the history: the prompt is the system prompt and
    # the new message, nothing else.
    assert [m["role"] for m in follow_up] == ["system", "user"]
    assert follow_up[-1]["content"] == "Hello again"


async def test_retries_of_a_failing_model_fit_inside_the_deadline(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    model: tuple[TimedLLM, str],
    nats_url: str,
    redis_url: str,
    uid: str,
) -> None:
    llm, url = model
    spec = spec_for(uid)
    gateway = await start_gateway(request_timeout_s=2.0)
    async with running_agent(spec, nats_url, redis_url, url, llm_retries=10) as rt:
        llm.push(*[Scripted(status=500, delay_s=0.4)] * 20)
        started = time.time()
        status, body = await post(http, gateway.url, spec.id, "hi", f"s{uid}")
        finished = time.time()
        # The agent stopped retrying while an answer could still reach the user: a clear
        # model error inside the deadline, not the gateway's 504 after it.
        assert status == 503 or status == 502, body
        assert finished - started < 2.0 + 1.0
        assert 2 <= len(llm.arrived) <= 5
        # Each attempt (0.4 s) ended before the deadline (the gateway set it a moment after
        # `started`; a generous slack for that moment on a busy machine).
        assert all(t + 0.4 < started + 2.0 + 0.3 for t in llm.arrived), "a try could not finish"
        outcome = sample(rt.registry, "chatbus_messages_total", agent=spec.id, outcome="upstream")
        assert outcome == 1
