"""``python -m chatbus_gateway``: read the settings once, then serve until SIGTERM."""

from __future__ import annotations

from chatbus.runtime import run
from chatbus_gateway.app import wire
from chatbus_gateway.settings import GatewaySettings


def main() -> None:
    run(GatewaySettings(), wire)


if __name__ == "__main__":
    main()
