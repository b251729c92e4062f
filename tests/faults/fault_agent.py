"""An agent process for fault tests: ``FAULT_AGENT_ID=<id> python -m tests.faults.fault_agent``."""

from __future__ import annotations

import os

from chatbus.agent.service import run_agent
from chatbus.agent.spec import AgentSpec

if __name__ == "__main__":
    run_agent(
        AgentSpec(
            id=os.environ["FAULT_AGENT_ID"],
            label="Fault",
            description="answers fault tests",
            system_prompt="You are the fault test agent.",
        )
    )
