"""``chatbus up --traces``: the viewer's start refuses a taken port, and never traces itself
into the services' viewer or phones home. (tests/browser/test_traces.py runs it for real.)"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from chatbus_dev.servers import free_port
from chatbus_dev.trace_viewer import start_viewer, trace_url, viewer_env


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} is in use"):
            start_viewer(tmp_path, tmp_path / "viewer.log", port=port, grpc_port=free_port())
    assert not (tmp_path / "viewer.log").exists()


def test_the_viewer_keeps_its_data_here_and_sends_nothing_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:6006")
    env = viewer_env(tmp_path, 6006, 6007)
    assert not any(k.startswith("OTEL_") for k in env)
    assert env["PHOENIX_WORKING_DIR"] == str(tmp_path / "phoenix")
    assert env["PHOENIX_TELEMETRY_ENABLED"] == "false"
    assert env["PHOENIX_HOST"] == "127.0.0.1"
    assert trace_url("http://127.0.0.1:6006", "ab" * 16).endswith("/redirects/traces/" + "ab" * 16)
