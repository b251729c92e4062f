"""`chatbus up`: every agent folder is started; .env means what it means to every service."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbus.agent.settings import AgentSettings
from chatbus.settings import load_env_file
from chatbus_dev.local import needs_offline_model, services

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


def test_dotenv_means_the_same_to_the_runner_the_cli_and_every_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "OPENAI_API_KEY=sk-dotenv\nOPENAI_BASE_URL=http://127.0.0.1:9/v1\nMODEL=\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "")  # empty in the environment means unset

    env: dict[str, str] = {"OPENAI_BASE_URL": ""}
    load_env_file(environ=env)
    service = AgentSettings()

    assert not needs_offline_model(env)  # the runner uses the model .env names
    assert env["OPENAI_BASE_URL"] == service.openai_base_url == "http://127.0.0.1:9/v1"
    assert service.openai_api_key is not None
    assert env["OPENAI_API_KEY"] == service.openai_api_key.get_secret_value() == "sk-dotenv"
    assert "MODEL" not in env and service.model is None  # an empty line is no setting

    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-the-environment/v1")
    env = {"OPENAI_BASE_URL": "http://from-the-environment/v1"}
    load_env_file(environ=env)
    assert env["OPENAI_BASE_URL"] == AgentSettings().openai_base_url  # the environment wins
