"""An agent with no model configured does not start, and says how to give it one.

The offline model is development tooling (``chatbus_dev``, never in a service image): ``./dev up``
and compose start it and point the agents at it; an agent never starts one inside itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

MODEL_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OFFLINE_LLM_URL")


@pytest.mark.parametrize("package", ["agent_support", "agent_sales"])
def test_an_agent_without_a_model_refuses_to_start_and_names_the_settings(
    package: str, nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in MODEL_VARIABLES}
    env |= {"NATS_URL": nats_url, "REDIS_URL": redis_url, "PORT": "0", "APP_ENV": "development"}
    done = subprocess.run(
        [sys.executable, "-m", package],
        cwd=tmp_path,  # no .env here
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "no model" in done.stderr
    for name in MODEL_VARIABLES:
        assert name in done.stderr
    assert "./dev up" in done.stderr
