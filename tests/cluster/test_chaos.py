"""Chaos: the clustered topology under load loses no accepted job when a node of anything dies.

Gateway x2, each agent x2, memory and cost as processes on a 3-node NATS cluster (3-replica
streams and KV) and Redis under Sentinel. Under sync and async load it kills -9, one after
another, a NATS node, an agent instance and the Redis master. Each fault's accepted jobs are
all done (before the next fault), and done once: no request paid the model twice, except one
whose model call was cut off by its instance's death. Every answered request has exactly its
two turns stored (none missing, none doubled); no request got a 500 or 502 (a refusal is a
clear 503); chats and jobs go through both gateways again within a bound per fault. The test
logs one row per fault (the README's table):
``uv run pytest tests/cluster/test_chaos.py -m chaos -s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from chatbus_dev import offline_llm
from chatbus_dev.cluster import ClusterInfra, cluster_infra
from chatbus_dev.offline_llm import OfflineLLM
from chatbus_dev.testing import ServiceFactory, ServiceProcess
from tests.cluster.chaos_load import FaultRow, Load, model_calls, recovery

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]
log = logging.getLogger("tests.chaos")

SYNC, ASYNC = 6, 6  # requests per fault, sent together just before the kill
MODEL_LATENCY_S = 0.5  # so requests are at the model when the fault hits
# Every job accepted so far is done this long after each fault (far more than it needs).
JOBS_DONE_WITHIN_S = 60.0
# Recovery bounds, kill to a chat answered and a job accepted through both gateways.
AGENT_RECOVERY_S = 5.0
NATS_RECOVERY_S = 15.0
REDIS_RECOVERY_S = 10.0


@dataclass
class Topology:
    infra: ClusterInfra
    llm: OfflineLLM
    gateways: list[ServiceProcess]
    support: list[ServiceProcess]


@pytest_asyncio.fixture
async def topology(tmp_path: Path) -> AsyncIterator[Topology]:
    llm = OfflineLLM(latency_s=MODEL_LATENCY_S)
    runner, llm_url = await offline_llm.start(llm)
    with cluster_infra(tmp_path / "infra") as infra:
        factory = ServiceFactory(
            tmp_path,
            infra.nats_url,
            infra.redis_url,
            OPENAI_BASE_URL=llm_url,
            OPENAI_API_KEY="sk-test-chaos",
        )
        try:
            support = [factory.make("agent_support") for _ in range(2)]
            others = [factory.make(m) for m in ("agent_sales", "agent_sales")]
            others += [factory.make("chatbus_memory"), factory.make("chatbus_cost")]
            await asyncio.gather(*(p.start() for p in (*support, *others)))
            gateways = [
                factory.make(
                    "chatbus_gateway",
                    CHATBUS_AUTH="off",
                    RATE_IP_PER_MIN="0",
                    RATE_SESSION_PER_MIN="0",
                    RATE_USER_PER_MIN="0",
                )
                for _ in range(2)
            ]
            await asyncio.gather(*(g.start() for g in gateways))
            yield Topology(infra, llm, gateways, support)
        finally:
            for p in reversed(factory.started):
                p.stop()
            await runner.cleanup()


async def until_model_busy(llm: OfflineLLM, fault: str, at_least: int) -> None:
    """Wait (bounded) until the model is working on ``at_least`` of this fault's requests."""
    end = time.monotonic() + 30
    while sum(1 for t in model_calls(llm) if f"-{fault}-" in t) < at_least:
        assert time.monotonic() < end, "the load never reached the model"
        await asyncio.sleep(0.02)  # allowed: polling what the fake model received


async def test_chaos_kills_lose_no_accepted_job(topology: Topology) -> None:
    infra, llm = topology.infra, topology.llm
    faults: list[tuple[str, Callable[[], None]]] = [
        ("nats", lambda: infra.nats.kill(0)),
        ("agent", topology.support[0].kill),
        ("redis", lambda: (infra.redis.master.proc.kill(), infra.redis.master.proc.wait())[0]),
    ]
    rows: list[FaultRow] = []
    at_model_then: set[str] = set()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        load = Load([g.url for g in topology.gateways], "support", http)
        for fault, kill in faults:
            batch: list[Awaitable[object]] = [
                *(load.chat(fault, "sync") for _ in range(SYNC)),
                *(load.chat(fault, "async") for _ in range(ASYNC)),
            ]
            tasks = [asyncio.ensure_future(b) for b in batch]
            await until_model_busy(llm, fault, 2)
            killed = time.monotonic()
            kill()
            if fault == "agent":  # these may have been at the model inside the killed instance
                # (a call it sent just before it died may still be in this process's buffers)
                await asyncio.sleep(0.1)  # allowed: the fake model reads what reached it
                at_model_then = {t for t in model_calls(llm) if not load.finished(t)}
            recovered = await recovery(load, fault, killed)
            await asyncio.gather(*tasks)
            # This fault's jobs finish before the next fault, so each row counts its own.
            await load.settle_jobs(timeout=JOBS_DONE_WITHIN_S)
            done_s = time.monotonic() - killed
            log.warning(
                "%s: chats answered and jobs accepted by both gateways %.1f s after the kill, "
                "every job done %.1f s after it",
                fault,
                recovered,
                done_s,
            )
            rows.append(FaultRow(fault, SYNC + ASYNC, 0, 0, 0, 0, recovered, done_s))

        calls = model_calls(llm)
        answered = [o.token for o in load.outcomes.values() if o.done]
        turns = await load.wait_turns(answered, timeout=60)
        errored = [o.token for o in load.outcomes.values() if not o.done]
        error_turns = {t: len(await load.stored_turns(t)) for t in errored}

    for row in rows:
        mine = [o for o in load.outcomes.values() if f"-{row.fault}-" in o.token]
        batch = [o for o in mine if "-probe" not in o.token]
        row.answered = sum(o.done for o in batch)
        # A clear error: the documented error body (sync), or a job that says why it failed.
        row.clear_errors = sum(o.clear for o in batch)
        row.lost = len(batch) - row.answered - row.clear_errors
        row.duplicated_calls = sum(max(0, calls[o.token] - 1) for o in mine)
        twice = {o.token: calls[o.token] for o in mine if calls[o.token] > 1}
        if twice:
            log.warning("%s: model calls per request paid more than once: %s", row.fault, twice)
        kinds = Counter(f"{o.token.split('-')[2]} {o.status} {o.error}".strip() for o in mine)
        log.warning("%s: outcomes %s", row.fault, dict(kinds))
        print(f"{row.fault}: {dict(kinds)}")  # noqa: T201 - what each fault's requests got
    table = "\n".join(r.line() for r in rows)
    log.warning(
        "per fault: fault | in flight | answered | clear errors | lost | dup. calls | recovery "
        "| jobs done\n%s",
        table,
    )
    print("\n" + table)  # noqa: T201 - the README's table, with -s

    # Each answer came from the model, and is stored once: the user's turn and the reply.
    for token in answered:
        assert calls[token] >= 1, token
        assert turns[token] == 2, (token, turns[token])
    # A request that failed clearly stored at most its one pair of turns, never a copy.
    assert all(n in (0, 2) for n in error_turns.values()), error_turns
    # Recovery (see the module doc): an agent instance's death is noticed by its beats; a NATS
    # node's by its streams' followers, which wait nats-server's Raft election timeout (4-9 s,
    # not configurable) before they elect a leader, so that bound is looser.
    bounds = {"agent": AGENT_RECOVERY_S, "nats": NATS_RECOVERY_S, "redis": REDIS_RECOVERY_S}
    for row in rows:
        assert row.recovery_s < bounds[row.fault], table
    # A fault is never a server error: every refusal is a clear 503 (try again), not 500/502.
    server_errors = [
        (o.token, o.status, o.error) for o in load.outcomes.values() if o.status in (500, 502)
    ]
    assert not server_errors, server_errors
    # Every sync request was answered or refused with the documented error.
    assert all(o.done or o.clear for o in load.outcomes.values() if not o.job_id), table
    # Every accepted job is done: none failed, was dead-lettered, or is still on its way.
    unfinished = [
        (o.token, o.job_id, o.job_status) for o in load.outcomes.values() if o.job_id and not o.done
    ]
    assert not unfinished, unfinished
    # ... and done once: no request paid the model twice, except one whose instance was killed
    # while the model answered it (that call never completed, so there was nothing to reuse).
    paid_twice = {t: n for t, n in calls.items() if n > (2 if t in at_model_then else 1)}
    assert not paid_twice, paid_twice
