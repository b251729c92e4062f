"""The cost service over NATS: authorize, record, count, dead letters, metrics."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from chatbus.agent.ports import Authorization
from chatbus.bus import Bus
from chatbus.contracts.chat import ChatRequest, Usage
from chatbus.contracts.cost import CountTokens, TokenCount
from chatbus.cost_client import UNAVAILABLE, BusCosts
from chatbus.dead_letters import list_dead_letters

TODAY = datetime.now(UTC).date().isoformat()


async def metric(world, name: str, labels: dict[str, str]) -> float | None:
    """A sample of the service's registry, once the consumer has set it (2 s at most)."""
    for _ in range(100):
        value = world.rt.registry.get_sample_value(name, labels)
        if value is not None:
            return value
        await asyncio.sleep(0.02)  # allowed: metrics are updated right after the Redis write
    return None


def chat(uid: str, n: int = 0, user: str | None = None, tenant: str = "default") -> ChatRequest:
    return ChatRequest(
        request_id=f"req-{uid}-{n}",
        agent="support",
        session_id=f"s-{uid}",
        message="hi",
        user_id=user or f"u-{uid}",
        tenant_id=tenant,
    )


async def test_count_over_the_bus_flags_unknown_models(start_cost, uid: str) -> None:
    world = await start_cost()
    known = await world.bus.request(
        CountTokens(model="gpt-4o", text="hello world"), TokenCount, timeout=5
    )
    assert (known.tokens, known.encoding, known.known_model) == (2, "o200k_base", True)
    msgs = [{"role": "user", "content": "hello world"}]
    unknown = await world.costs.count("made-up-model", messages=msgs)
    assert (unknown.tokens, unknown.known_model) == (3 + 3 + 1 + 2, False)


async def test_soft_limit_downgrades_and_hard_limit_denies(start_cost, uid: str) -> None:
    # gpt-4o: 1,000 prompt + 512 completion estimated = $0.0025 + $0.00512 = $0.00762
    world = await start_cost(
        budgets=[{"scope": "user", "period": "daily", "unit": "usd", "soft": 0.01, "hard": 0.02}]
    )
    costs = world.costs
    first = await costs.authorize(
        chat(uid, 1), model="gpt-4o", cheap_model="gpt-4o-mini", prompt_tokens=1000
    )
    assert (first.decision, first.model) == ("allow", "gpt-4o")
    assert first.reservation_id
    second = await costs.authorize(
        chat(uid, 2), model="gpt-4o", cheap_model="gpt-4o-mini", prompt_tokens=1000
    )
    assert (second.decision, second.model) == ("downgrade", "gpt-4o-mini")
    assert "daily usd budget for user" in second.reason
    assert "cheaper model gpt-4o-mini" in second.reason
    # settle both at ~$0.01 each: 4,000 x $2.50/1M and 66,667 x $0.15/1M; spend > $0.02
    for req, auth, prompt in ((chat(uid, 1), first, 4000), (chat(uid, 2), second, 66_667)):
        usage = Usage(prompt_tokens=prompt, completion_tokens=0)
        await costs.record(req, auth, model=auth.model, usage=usage, cached=False, counted=False)
    await world.wait_requests(2, "default", TODAY)
    third = await costs.authorize(
        chat(uid, 3), model="gpt-4o", cheap_model="gpt-4o-mini", prompt_tokens=10
    )
    assert third.decision == "deny"
    assert third.reason.startswith("daily usd budget for user (each) reached")
    # another user still has budget
    other = await costs.authorize(
        chat(uid, 4, user=f"v-{uid}"), model="gpt-4o", cheap_model=None, prompt_tokens=10
    )
    assert other.decision == "allow"


async def test_token_budget_without_cheap_model_allows_soft_then_denies(
    start_cost, uid: str
) -> None:
    world = await start_cost(
        budgets=[
            {
                "scope": "agent",
                "id": "support",
                "period": "monthly",
                "unit": "tokens",
                "soft": 1000,
                "hard": 1600,
            }
        ],
        default_completion_tokens=100,
    )
    a = await world.costs.authorize(
        chat(uid, 1), model="gpt-4o", cheap_model=None, prompt_tokens=800
    )
    b = await world.costs.authorize(
        chat(uid, 2), model="gpt-4o", cheap_model=None, prompt_tokens=500
    )
    c = await world.costs.authorize(
        chat(uid, 3), model="gpt-4o", cheap_model=None, prompt_tokens=200
    )
    assert a.decision == "allow" and a.reason == ""
    assert b.decision == "allow" and "no cheaper model" in b.reason
    assert c.decision == "deny" and "1,500 tokens used of 1,600 tokens" in c.reason


async def test_fifty_concurrent_requests_stop_at_the_hard_limit(start_cost, uid: str) -> None:
    # Each request: 1,000 prompt + 512 completion on gpt-4o-mini = $0.00015 + $0.0003072
    one = 0.00015 + 512 * 0.6e-6
    hard = 10.5 * one
    world = await start_cost(
        budgets=[{"scope": "global", "period": "daily", "unit": "usd", "hard": hard, "tenant": uid}]
    )
    reqs = [chat(uid, i, tenant=uid) for i in range(50)]
    auths = await asyncio.gather(
        *(
            world.costs.authorize(r, model="gpt-4o-mini", cheap_model=None, prompt_tokens=1000)
            for r in reqs
        )
    )
    allowed = [(r, a) for r, a in zip(reqs, auths, strict=True) if a.decision == "allow"]
    assert len(allowed) == 10
    assert all("reached" in a.reason for a in auths if a.decision == "deny")
    # every allowed call really happens and costs what was estimated
    await asyncio.gather(
        *(
            world.costs.record(
                r,
                a,
                model="gpt-4o-mini",
                usage=Usage(prompt_tokens=1000, completion_tokens=512),
                cached=False,
                counted=False,
            )
            for r, a in allowed
        )
    )
    report = await world.wait_requests(10, uid, TODAY)
    assert report.total.cost_usd <= hard + one
    assert report.total.cost_usd == pytest.approx(10 * one)
    late = await world.costs.authorize(
        chat(uid, 99, tenant=uid), model="gpt-4o-mini", cheap_model=None, prompt_tokens=1000
    )
    assert late.decision == "deny"


async def test_an_event_counts_once_however_often_it_arrives(
    start_cost, make_event, uid: str
) -> None:
    world = await start_cost()
    ev = make_event(1, tenant_id=uid)
    await world.publish(ev, msg_id="first")
    await world.publish(ev, msg_id="second")  # a different JetStream id: only the consumer dedups
    await world.publish(make_event(2, tenant_id=uid))
    rep = await world.wait_requests(2, uid, TODAY)
    # wait for the duplicate to be drained from the stream too
    info = await world.bus.js.consumer_info("COST", "cost-usage")
    for _ in range(200):
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.02)  # allowed: waiting for the consumer to ack the duplicate
        info = await world.bus.js.consumer_info("COST", "cost-usage")
    rep = await world.report(uid, from_date=TODAY, to_date=TODAY)
    assert rep.total.requests == 2
    assert rep.total.tokens == 300


async def test_cache_hit_is_recorded_at_zero_cost(start_cost, uid: str) -> None:
    world = await start_cost()
    req = chat(uid, 1, tenant=uid)
    auth = await world.costs.authorize(req, model="gpt-4o", cheap_model=None, prompt_tokens=50)
    await world.costs.record(req, auth, model="gpt-4o", usage=Usage(), cached=True, counted=False)
    rep = await world.wait_requests(1, uid, TODAY)
    assert (rep.total.cost_usd, rep.total.tokens, rep.total.cache_hits) == (0.0, 0, 1)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_malformed_usage_event_is_dead_lettered(start_cost, make_event, uid: str) -> None:
    world = await start_cost()
    seen = Lines()  # serve() owns the root handlers, so listen on the logger itself
    logging.getLogger("chatbus.jetstream").addHandler(seen)
    await world.bus.js.publish("cost.usage.recorded.v1", b'{"event_id": "x", "prompt_tokens": -4}')
    await world.bus.js.publish("cost.usage.recorded.v1", b"not json at all")
    await world.publish(make_event(1, tenant_id=uid))
    await world.wait_requests(1, uid, TODAY)
    parked = []
    for _ in range(200):
        parked = await list_dead_letters(world.bus)
        if len(parked) >= 2:
            break
        await asyncio.sleep(0.02)  # allowed: dead-lettering is asynchronous
    assert [p.subject for p in parked] == ["cost.usage.recorded.v1"] * 2
    assert "prompt_tokens" in parked[0].reason
    logging.getLogger("chatbus.jetstream").removeHandler(seen)
    assert any("dead-lettered message from cost.usage.recorded.v1" in x for x in seen.lines)
    dead = await metric(world, "chatbus_dead_letters_total", {"subject": "cost.usage.recorded.v1"})
    assert dead == 2
    assert (await world.report(uid, from_date=TODAY, to_date=TODAY)).total.requests == 1


async def test_metrics_count_tokens_and_cost_by_agent_and_model(
    start_cost, make_event, uid: str
) -> None:
    world = await start_cost()
    await world.publish(
        make_event(1, tenant_id=uid, agent=f"a{uid}", prompt_tokens=1000, completion_tokens=500)
    )
    await world.wait_requests(1, uid, TODAY)
    labels = {"agent": f"a{uid}", "model": "gpt-4o-mini"}
    assert await metric(world, "chatbus_tokens_total", {**labels, "kind": "prompt"}) == 1000
    assert await metric(world, "chatbus_tokens_total", {**labels, "kind": "completion"}) == 500
    assert await metric(world, "chatbus_cost_usd_total", labels) == pytest.approx(0.00045)


async def test_unknown_model_is_charged_the_default_and_flagged(
    start_cost, make_event, uid: str
) -> None:
    world = await start_cost()
    await world.publish(make_event(1, tenant_id=uid, model="mystery-7b", prompt_tokens=1000))
    rep = await world.wait_requests(1, uid, TODAY)
    assert rep.total.cost_usd == pytest.approx((1000 * 2.5 + 50 * 10) / 1e6)  # gpt-4o's price
    flagged = await metric(world, "chatbus_cost_unpriced_events_total", {"model": "mystery-7b"})
    assert flagged == 1


async def test_budget_remaining_gauge(start_cost, make_event, uid: str) -> None:
    world = await start_cost(budgets=[{"scope": "tenant", "id": uid, "period": "daily", "hard": 1}])
    await world.publish(make_event(1, tenant_id=uid, prompt_tokens=1000, completion_tokens=500))
    await world.wait_requests(1, uid, TODAY)
    left = await metric(
        world, "chatbus_budget_remaining_usd", {"scope": f"tenant:{uid}", "period": "daily"}
    )
    assert left == pytest.approx(1 - 0.00045)


async def test_authorize_fails_open_when_the_cost_service_is_down(own_nats: str, uid: str) -> None:
    bus = await Bus.connect(own_nats, service="t")
    try:
        auth = await BusCosts(bus, timeout_s=0.5).authorize(
            chat(uid), model="gpt-4o", cheap_model="gpt-4o-mini", prompt_tokens=10
        )
    finally:
        await bus.drain(timeout=2)
    assert auth == Authorization(decision="allow", model="gpt-4o", reason=UNAVAILABLE)
