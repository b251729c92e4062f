"""``python -m chatbus_memory``: the memory service."""

from __future__ import annotations

import functools

from chatbus.runtime import run
from chatbus_memory.service import wire
from chatbus_memory.settings import MemorySettings


def main() -> None:
    settings = MemorySettings()
    run(settings, functools.partial(wire, settings))


if __name__ == "__main__":
    main()
