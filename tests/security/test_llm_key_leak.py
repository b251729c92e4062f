"""The model provider's error text never carries a piece of ``OPENAI_API_KEY`` onward.

OpenAI answers a bad key with "Incorrect API key provided: sk-proj-****…abcd": the key's tail.
That text went into the agent's log line and, as the error of the turn, to the gateway, which
answered the HTTP caller "502 the language model failed: ... sk-proj-****abcd".
"""

from __future__ import annotations

import pytest

from chatbus.agent.settings import AgentSettings
from chatbus.errors import RemoteError
from chatbus_dev.offline_llm import Scripted
from chatbus_dev.testing import serving
from chatbus_gateway.api.errors import from_bus_error
from tests.collab.collab_harness import Crew, make_wire

pytestmark = pytest.mark.timeout(60)

KEY = "sk-proj-" + "Q7a" * 14 + "Zx9w"
TAIL = KEY[-4:]


@pytest.mark.parametrize("status", [401, 400, 500])
async def test_a_provider_error_quoting_the_key_reaches_neither_logs_nor_the_caller(
    crew: Crew, capfd: pytest.CaptureFixture[str], status: int
) -> None:
    spec = crew.support
    settings = AgentSettings(
        service_name=f"agent-{spec.id}",
        nats_url=crew.nats_url,
        redis_url=crew.redis_url,
        port=0,
        host="127.0.0.1",
        openai_base_url=crew.llm_url,
        openai_api_key=KEY,
        memory_enabled=False,
        cost_enabled=False,
        cache_enabled=False,
        log_format="json",
    )
    quoted = (
        f"Incorrect API key provided: sk-proj-{'*' * 36}{TAIL}. You can find your API key "
        "at https://platform.openai.com/account/api-keys."
    )
    async with serving(settings, make_wire(spec)):
        crew.llm.push(*[Scripted(status=status, error=quoted)] * 6)
        with pytest.raises(RemoteError) as failed:
            await crew.chat(spec, "hi", f"s{crew.uid}", tenant_id=f"t{crew.uid}")
    answered = from_bus_error(failed.value, spec.id)  # what the gateway answers the caller
    assert answered.status == 502
    out, err = capfd.readouterr()
    for where, text in (("answer", answered.message), ("logs", out + err)):
        assert TAIL not in text, (where, text[-2000:])
        assert "****" not in text, where
