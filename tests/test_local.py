"""`chatbus up` starts every agent folder, including one added later."""

from __future__ import annotations

from pathlib import Path

from chatbus.local import services

ROOT = Path(__file__).resolve().parents[1]


def test_up_starts_the_shipped_services_on_their_documented_ports() -> None:
    ports = {s.name: (s.module, s.port) for s in services(ROOT)}
    assert ports["gateway"] == ("chatbus_gateway", 8080)
    assert ports["agent-support"] == ("agent_support", 8081)
    assert ports["agent-sales"] == ("agent_sales", 8082)
    assert ports["memory"] == ("chatbus_memory", 8083)
    assert ports["cost"] == ("chatbus_cost", 8084)
    assert [s.name for s in services(ROOT)][-1] == "gateway"  # agents are up before it


def test_a_new_agent_folder_is_started_too(tmp_path: Path) -> None:
    for name in ("agent-support", "agent-sales", "agent-billing"):
        (tmp_path / "services" / name / "src").mkdir(parents=True)
    found = {s.name: (s.module, s.port) for s in services(tmp_path)}
    assert found["agent-billing"] == ("agent_billing", 8085)
    assert len({port for _, port in found.values()}) == len(found)  # no port twice
