"""``chatbus up --traces``: a trace viewer on this machine, and every service pointed at it.

The viewer is Arize Phoenix (PyPI ``arize-phoenix``): it receives OTLP over HTTP on its own
port (``/v1/traces``) and shows each trace as a tree of spans, with no Docker and no network
once installed. It is ~600 MB, so it is never part of the default install: the first
``--traces`` installs it into its own environment with ``uv tool install`` (pinned below),
later ones start at once. Its data lives in ``<data dir>/phoenix``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from chatbus_dev.child_processes import die_with_parent, port_free
from chatbus_dev.servers import ServerProcess

PHOENIX = "arize-phoenix==20.26.1"
VIEWER_PORT = 6006
GRPC_PORT = 6007  # Phoenix's OTLP/gRPC receiver; not 4317, which a local collector may hold


def trace_url(viewer_url: str, trace_id: str) -> str:
    """The viewer's page for one trace (32 hex digits)."""
    return f"{viewer_url}/redirects/traces/{trace_id}"


def find_uv() -> str | None:
    """``uv`` on PATH, or where ``./dev`` installs it."""
    for candidate in (
        shutil.which("uv"),
        str(Path.home() / ".local" / "bin" / "uv"),
        str(Path.cwd() / ".tools" / "bin" / "uv"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def installed_phoenix() -> str | None:
    """The ``phoenix`` command when Phoenix is installed (on PATH or as a ``uv tool``)."""
    for candidate in (shutil.which("phoenix"), str(Path.home() / ".local" / "bin" / "phoenix")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def install_phoenix(log: Path) -> str:
    """Install the pinned Phoenix with ``uv tool install`` (its own environment, kept for the
    next run) and return its ``phoenix`` command."""
    uv = find_uv()
    if uv is None:
        raise RuntimeError("--traces needs uv to install the trace viewer: run it through ./dev")
    with log.open("ab") as out:
        done = subprocess.run(
            [uv, "tool", "install", PHOENIX], stdout=out, stderr=subprocess.STDOUT, check=False
        )
        bin_dir = subprocess.run(
            [uv, "tool", "dir", "--bin"], capture_output=True, text=True, check=False
        ).stdout.strip()
    command = installed_phoenix() or shutil.which("phoenix", path=bin_dir or None)
    if done.returncode != 0 or command is None:
        raise RuntimeError(f"could not install {PHOENIX}; see {log}")
    return command


def viewer_env(data_dir: Path, port: int, grpc_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(grpc_port),
            "PHOENIX_WORKING_DIR": str(data_dir / "phoenix"),
            "PHOENIX_TELEMETRY_ENABLED": "false",  # no usage reports sent anywhere
        }
    )
    return env


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_viewer(
    data_dir: Path,
    log: Path,
    port: int = VIEWER_PORT,
    grpc_port: int = GRPC_PORT,
    timeout: float = 900.0,
) -> ServerProcess:
    """Start Phoenix (installing it first if needed: minutes) and wait until it answers."""
    url = f"http://127.0.0.1:{port}"
    taken = [p for p in (port, grpc_port) if not port_free(p)]
    if taken:
        raise RuntimeError(
            f"the trace viewer's port {taken[0]} is in use by another process: stop it, or drop "
            "--traces"
        )
    (data_dir / "phoenix").mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = installed_phoenix() or install_phoenix(log)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [command, "serve"],
            env=viewer_env(data_dir, port, grpc_port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the runner, which stops it in order
            preexec_fn=die_with_parent(),  # and it dies with the runner whatever kills it
        )
    viewer = ServerProcess("trace viewer", url, proc)
    deadline = time.monotonic() + timeout
    while not ready(url):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the trace viewer exited ({proc.returncode}):\n{tail}")
        if time.monotonic() > deadline:
            viewer.stop()
            raise TimeoutError(f"the trace viewer did not answer in {timeout:.0f} s; see {log}")
        time.sleep(0.5)  # allowed: polling a process that has no readiness signal but /healthz
    return viewer
