"""Child processes that die with their parent, and who owns a TCP port (Linux ``/proc``).

``chatbus up`` starts NATS, Redis and every service as children. Whatever ends the runner —
Ctrl-C, SIGTERM, a closed terminal, SIGKILL — its children must not outlive it holding the
ports: :func:`die_with_parent` makes the kernel send them SIGTERM (``PR_SET_PDEATHSIG``) when
the runner dies, so they drain and exit on their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn: Callable[..., int] = ctypes.CDLL(name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return fn


_PRCTL = _prctl()  # resolved here, not between fork and exec


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for Popen: the child gets ``sig`` when this process dies.

    The kernel sends it when the thread that forked the child exits, so spawn from the main
    thread. None where prctl is missing (not Linux): the caller still stops its children itself.
    """
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), sig)

    return arm


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now (nothing else holds it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def owns_port(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` is the one listening on ``port``; None when /proc cannot say."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None if not Path("/proc/net/tcp").exists() else False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False
