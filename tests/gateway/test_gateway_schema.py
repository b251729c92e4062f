"""Property-based: schemathesis drives every operation of /openapi.json; nothing answers 5xx."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import hypothesis
import schemathesis
from hypothesis import HealthCheck
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chatbus.agent.records import RecordStore
from chatbus.agent.records_service import RecordsResponder
from chatbus.bus import Bus
from chatbus.redis_link import RedisLink
from chatbus.testing import serving
from chatbus_cost.__main__ import CostSettings
from chatbus_cost.__main__ import make_wire as make_cost_wire
from chatbus_memory.service import wire as memory_wire
from chatbus_memory.settings import MemorySettings
from tests.gateway.gw_agent_stub import StubAgent
from tests.gateway.gw_harness import StartGateway


def fuzz(url: str, examples: int) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=url, timeout=10)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")
            try:
                # Rules a schema cannot state (a report spans at most 400 days) reject some
                # schema-valid requests with a 422: that check alone is left out.
                case.validate_response(response, excluded_checks=[positive_data_acceptance])
            except (Exception, BaseExceptionGroup) as e:  # documented != actual: reported
                failures.append(f"{case.method} {case.formatted_path}: {str(e)[:300]}")

        check()
    return failures


async def test_no_5xx_and_answers_match_the_schema(
    start_gateway: StartGateway,
    agent: StubAgent,
    bus: Bus,
    redis_link: RedisLink,
    nats_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    # The agent runtime's records responder behind /api/tickets, /api/leads, ...
    owner = await RecordsResponder(RecordStore(redis_link)).subscribe(bus)
    # The memory and cost services behind /api/sessions, /api/memory and /api/usage.
    memory = MemorySettings(
        nats_url=nats_url,
        redis_url=redis_url,
        data_dir=tmp_path,
        port=0,
        host="127.0.0.1",
        log_format="text",
    )
    cost = CostSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        port=0,
        host="127.0.0.1",
        log_format="text",
        redis_prefix=f"schema:{tmp_path.name}:",
    )
    async with (
        serving(memory, functools.partial(memory_wire, memory), timeout=60),
        serving(cost, make_cost_wire(cost)),
    ):
        gw = await start_gateway(
            rate_ip_per_min=0, rate_session_per_min=0, rate_user_per_min=0, request_timeout_s=5
        )
        failures = await asyncio.wait_for(asyncio.to_thread(fuzz, gw.url, 25), 90)
    for sub in owner:
        await sub.unsubscribe()
    assert not failures, "\n".join(failures)
