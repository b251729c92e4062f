"""schemathesis drives every operation of /openapi.json, with auth on and off.

Positive and negative data, every check (no 5xx, answers match the document, schema-valid
requests accepted, schema-invalid ones refused, auth enforced where documented). Bounded:
``EXAMPLES`` cases per operation and mode, so the suite stays fast.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.gateway.gw_harness import StartGateway
from tests.security.conftest import ADMIN_KEY, Stack

EXAMPLES = 12
# Values a schema cannot judge: a page cursor is opaque (one the API never issued is a 422
# however well-formed), a callback URL must resolve to an address the deployment allows.
OPAQUE = {"cursor", "callback_url"}


def _opaque_refused(response: Any) -> bool:
    if response.status_code != 422:
        return False
    try:
        return response.json()["error"]["param"] in OPAQUE
    except (ValueError, KeyError, TypeError):
        return False


def fuzz(url: str, headers: dict[str, str], examples: int = EXAMPLES) -> list[str]:
    """Every failure schemathesis finds on the gateway at ``url``, one line each."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _drive(result.ok(), mode, url, headers, examples, failures)
            except hypothesis.errors.Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to break: no parameters
    return failures


def _drive(
    operation: Any,
    mode: GenerationMode,
    url: str,
    headers: dict[str, str],
    examples: int,
    failures: list[str],
) -> None:
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        given = {**headers, **(case.headers or {})}
        response = case.call(base_url=url, headers=given, timeout=15)
        where = f"{mode.value} {case.method} {case.formatted_path}"
        if response.status_code >= 500:
            failures.append(f"{where} -> {response.status_code} {response.text[:200]}")
        excluded = [positive_data_acceptance] if _opaque_refused(response) else []
        try:
            case.validate_response(response, headers=given, excluded_checks=excluded)
        except (Exception, BaseExceptionGroup) as e:  # documented != actual
            failures.append(f"{where} -> {response.status_code}: {str(e)[:400]}")

    check()


async def test_every_operation_with_auth_on(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.a.key}"}
    failures = await asyncio.wait_for(asyncio.to_thread(fuzz, stack.url, headers), 600)
    assert not failures, "\n".join(failures)


@pytest.mark.usefixtures("memory_rt", "cost_rt", "remembering_agent", "records_owner")
async def test_every_operation_with_auth_off(start_gateway: StartGateway) -> None:
    gw = await start_gateway(
        rate_ip_per_min=0, rate_session_per_min=0, rate_user_per_min=0, request_timeout_s=5
    )
    failures = await asyncio.wait_for(asyncio.to_thread(fuzz, gw.url, {}), 600)
    assert not failures, "\n".join(failures)


__all__ = ["ADMIN_KEY"]
