"""An agent instance killed (kill -9) after its answer began streaming: the stream ends in
seconds with a clear 503 error event (the words already shown are not sent again), and the
session's history holds nothing of the broken answer."""

from __future__ import annotations

import time

import aiohttp
import pytest

from chatbus_dev.testing import ServiceFactory
from tests.faults.conftest import sse_events
from tests.faults.test_agent_crash import start_agents
from tests.faults.test_stream_faults import SlowModel, serve_model
from tests.gateway.gw_harness import StartGateway

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_an_instance_killed_mid_stream_ends_the_stream_with_a_503_in_seconds(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    service_factory: ServiceFactory,
    uid: str,
) -> None:
    model = SlowModel(pause_s=0.4)
    agent = f"midstream{uid}"
    async with serve_model(model) as url:
        (doomed,) = await start_agents(service_factory, agent, url, 1)
        gateway = await start_gateway(request_timeout_s=30, rate_ip_per_min=0)
        chat_url = f"{gateway.url}/api/chat/{agent}"
        async with http.post(
            chat_url,
            json={"message": "Say hello", "session_id": f"s{uid}"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.status == 200
            raw = b""
            async for line in r.content:
                raw += line
                if raw.count(b"event: chunk") == 2:
                    break  # two words are out
            doomed.kill()
            killed_at = time.monotonic()
            raw += await r.content.read()
            ended_in = time.monotonic() - killed_at
        events = sse_events(raw.decode())
        model.pause_s = 0.0
        await start_agents(service_factory, agent, url, 1)  # a new instance
        async with http.post(
            chat_url, json={"message": "Hello again", "session_id": f"s{uid}"}
        ) as r:
            assert r.status == 200, await r.text()
    streamed = "".join(d["delta"] for n, d in events if n == "chunk")
    assert streamed.startswith("Hello there,") and "indeed" not in streamed  # shown once
    assert events[-1][0] == "error" and events[-1][1]["error"]["code"] == 503, events
    assert ended_in < 3.5 + 3.0, f"the broken stream ended {ended_in:.1f}s after the kill"
    roles = [m["role"] for m in model.calls[-1]["messages"]]  # type: ignore[index, union-attr]
    assert roles == ["system", "user"]  # the broken answer left no turn
