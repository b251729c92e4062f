"""``python -m agent_sales``: the sales agent service."""

from agent_sales.persona import SALES
from chatbus.agent.service import run_agent


def main() -> None:
    run_agent(SALES, port=8082)


if __name__ == "__main__":
    main()
