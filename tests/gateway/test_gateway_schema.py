"""Property-based: schemathesis drives every operation of /openapi.json; nothing answers 5xx."""

from __future__ import annotations

import asyncio

import hypothesis
import schemathesis
from hypothesis import HealthCheck

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
                case.validate_response(response)
            except (Exception, BaseExceptionGroup) as e:  # documented != actual: reported
                failures.append(f"{case.method} {case.formatted_path}: {str(e)[:300]}")

        check()
    return failures


async def test_no_5xx_and_answers_match_the_schema(
    start_gateway: StartGateway, agent: StubAgent
) -> None:
    gw = await start_gateway(
        rate_ip_per_min=0, rate_session_per_min=0, rate_user_per_min=0, request_timeout_s=5
    )
    failures = await asyncio.wait_for(asyncio.to_thread(fuzz, gw.url, 25), 60)
    assert not failures, "\n".join(failures)
