"""The gateway's shape: it reaches NATS only through the Bus wrapper (``chatbus.bus.Bus``)."""

from __future__ import annotations

import re
from pathlib import Path

import chatbus_gateway

SRC = Path(chatbus_gateway.__file__).parent
RAW_NATS = re.compile(r"\bbus\.(nc|js)\b")  # the wrapper's nats-py connection and JetStream


def test_no_gateway_module_uses_the_raw_nats_connection() -> None:
    raw = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if RAW_NATS.search(p.read_text())}
    assert not raw, f"use the Bus wrapper's methods instead: {sorted(raw)}"
