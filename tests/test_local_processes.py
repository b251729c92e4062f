"""`chatbus up` as real processes: .env settings, children that die with it, closed stdout, ports.

Each test runs the runner (``python -m chatbus_dev.cli up``) on free ports against the test
session's NATS and Redis, with only a few services (``--services``) to stay quick.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chatbus.bus import Bus
from chatbus.contracts.chat import ChatReply, ChatRequest
from chatbus_dev.child_processes import owns_port, port_free
from chatbus_dev.local import OFFLINE_OFFSET
from chatbus_dev.offline_llm import OfflineLLM, Scripted
from chatbus_dev.servers import free_port, slowness

UP = [sys.executable, "-m", "chatbus_dev.cli", "up"]
START_S = 120.0  # generous: on an idle machine the few services start in seconds
# pytest-timeout's default is shorter than a start on a very busy machine may take.
pytestmark = pytest.mark.timeout(900)


def base_port() -> int:
    """A port P with P..P+19 free (the runner's gateway, services and offline model)."""
    for _ in range(50):
        p = free_port()
        if p + OFFLINE_OFFSET < 65535 and all(port_free(p + i) for i in range(OFFLINE_OFFSET + 1)):
            return p
    raise RuntimeError("no free port range")


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                found.append(int(d.name))
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text()


def wait_gone(pids: list[int], timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout * slowness()
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)  # allowed: polling other processes' exit
    return left


@dataclass
class Runner:
    proc: subprocess.Popen[bytes]
    port: int
    seen: list[str] = field(default_factory=list)
    buffer: bytes = b""

    def read_until(self, text: str, timeout: float = START_S) -> bool:
        """Read the runner's stdout (no thread: the test closes it later) until ``text``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout * slowness()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return False
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            self.seen += [line.decode() for line in lines]
            if any(text in line for line in self.seen):
                return True
        return False

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode()

    def why(self) -> str:
        return "\n".join(self.seen) + self.stderr()


StartUp = Callable[..., Runner]


@pytest.fixture
def run_up(tmp_path: Path, nats_url: str, redis_url: str) -> Iterator[StartUp]:
    started: list[Runner] = []

    def start(*services: str, env: dict[str, str] | None = None, port: int = 0) -> Runner:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OTEL_"))}
        full.update({"NATS_URL": nats_url, "REDIS_URL": redis_url, **(env or {})})
        port = port or base_port()
        data = str(tmp_path / "data")
        proc = subprocess.Popen(
            [*UP, "--port", str(port), "--services", ",".join(services), "--data-dir", data],
            cwd=tmp_path,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        runner = Runner(proc, port)
        started.append(runner)
        return runner

    yield start
    for r in started:
        kids = children_of(r.proc.pid)
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
            r.proc.wait(60)
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_dotenv_settings_reach_the_runner_and_every_service(
    run_up: StartUp, tmp_path: Path, bus: Bus, fake_llm: tuple[OfflineLLM, str]
) -> None:
    llm, url = fake_llm
    (tmp_path / ".env").write_text(
        f"OPENAI_API_KEY=sk-from-dotenv-{uuid.uuid4().hex}\nOPENAI_BASE_URL={url}\n"
    )
    key = (tmp_path / ".env").read_text().split("\n")[0].split("=", 1)[1]
    runner = run_up("agent-support")
    # In a thread: this loop serves the fake model the agent may ask while it starts.
    assert await asyncio.to_thread(runner.read_until, "Ready."), runner.why()
    banner = "\n".join(runner.seen)
    assert f"llm       {url}" in banner and "OFFLINE" not in banner
    assert not any("offline_llm" in cmdline(p) for p in children_of(runner.proc.pid))

    llm.push(Scripted(content="answered by the model .env names"))
    req = ChatRequest(
        request_id=uuid.uuid4().hex,
        agent="support",
        session_id=f"env-{uuid.uuid4().hex[:8]}",
        message="Hello!",
    )
    reply = await bus.request(req, ChatReply, ChatRequest.subject_for("support"), timeout=30)
    assert reply.reply == "answered by the model .env names"
    assert llm.requests_for("support")[-1].headers["Authorization"] == f"Bearer {key}"

    runner.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(runner.proc.wait, 60 * slowness()) == 0


def test_the_runners_children_die_when_it_is_killed(run_up: StartUp) -> None:
    runner = run_up("cost")
    assert runner.read_until("Ready."), runner.why()
    kids = children_of(runner.proc.pid)
    assert len(kids) >= 2  # the offline model and the cost service
    runner.proc.kill()  # SIGKILL: no chance to clean up
    runner.proc.wait()
    assert wait_gone(kids) == []
    assert port_free(runner.port + 4) and port_free(runner.port + OFFLINE_OFFSET)


def test_a_closed_stdout_then_ctrl_c_stops_everything_cleanly(run_up: StartUp) -> None:
    runner = run_up("cost")
    assert runner.read_until("Ready."), runner.why()
    kids = children_of(runner.proc.pid)
    # `./dev up | tee log` and Ctrl-C: tee is gone (the pipe is closed), the runner gets SIGINT.
    assert runner.proc.stdout is not None
    runner.proc.stdout.close()
    runner.proc.send_signal(signal.SIGINT)
    assert runner.proc.wait(60 * slowness()) == 0
    assert "Traceback" not in runner.stderr()
    assert wait_gone(kids) == []
    assert port_free(runner.port + 4)


def test_a_port_taken_by_another_process_is_refused_before_anything_starts(
    run_up: StartUp,
) -> None:
    port = base_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port + 4))  # the cost service's port
        other.listen()
        runner = run_up("cost", port=port)
        code = runner.proc.wait(60 * slowness())
        err = runner.stderr()
    assert code != 0
    assert f"{port + 4} (cost)" in err and "already in use" in err
    assert not runner.read_until("Ready.", timeout=1)
    assert children_of(runner.proc.pid) == []


def test_only_the_process_listening_on_a_port_owns_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert owns_port(os.getpid(), port) is True
        idle = "import time; time.sleep(30)"  # allowed: the child only has to exist
        child = subprocess.Popen([sys.executable, "-c", idle])
        try:
            assert owns_port(child.pid, port) is False
        finally:
            child.kill()
            child.wait()
