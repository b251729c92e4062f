"""``python -m agent_support``: the support agent service."""

from agent_support.persona import SUPPORT
from chatbus.agent.service import run_agent


def main() -> None:
    run_agent(SUPPORT, port=8081)


if __name__ == "__main__":
    main()
