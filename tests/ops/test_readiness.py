"""Readiness waits: a slow but working start is waited for; an idle, never-ready process is not."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from chatbus_dev.servers import ReadinessBound, free_port, wait_http_ok

# A "service" that works for ``busy_s`` seconds (imports, a model loading ...) before it serves
# 200 on /ready; with busy_s < 0 it never serves and sits idle.
CHILD = """
import sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
port, busy_s = int(sys.argv[1]), float(sys.argv[2])
if busy_s < 0:
    time.sleep(3600)  # allowed: a child that sits idle, never ready
end = time.monotonic() + busy_s
while time.monotonic() < end:
    sum(range(10_000))
class Ready(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", port), Ready).serve_forever()
"""


@contextmanager
def child(busy_s: float) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(port), str(busy_s)])
    try:
        yield proc, f"http://127.0.0.1:{port}/ready"
    finally:
        proc.kill()
        proc.wait()


async def test_a_process_still_working_on_its_start_is_waited_for_past_the_nominal_bound() -> None:
    with child(busy_s=3.0) as (proc, url):
        started = time.monotonic()
        ok = await wait_http_ok(url, timeout=1.0, pid=proc.pid, alive=lambda: proc.poll() is None)
        assert ok, "a busy starting process was given up on"
        assert time.monotonic() - started >= 2.5  # it really outlasted the 1 s nominal bound


async def test_an_idle_process_that_never_gets_ready_is_reported() -> None:
    with child(busy_s=-1) as (proc, url):
        started = time.monotonic()
        ok = await wait_http_ok(url, timeout=1.0, pid=proc.pid, alive=lambda: proc.poll() is None)
        assert not ok and time.monotonic() - started <= 6.0 + 2.5  # within its cap (6 x 1 s)


def test_the_bound_gives_up_on_an_idle_process_long_before_its_cap() -> None:
    with child(busy_s=-1) as (proc, _):
        bound = ReadinessBound(1.0, proc.pid, stretch=100)
        while not bound.expired():
            time.sleep(0.05)  # allowed: polling the bound under test
        waited = bound.waited()
    # Nominal 1 s x the machine's slowness (the highest it saw), then only while it works.
    assert 1.0 <= waited <= 1.0 * bound.scale + 2.5
    assert waited < bound.cap


async def test_a_process_that_dies_is_reported_at_once() -> None:
    with child(busy_s=-1) as (proc, url):
        proc.kill()
        proc.wait()
        started = time.monotonic()
        ok = await wait_http_ok(url, timeout=30.0, pid=proc.pid, alive=lambda: proc.poll() is None)
        assert not ok and time.monotonic() - started < 1.0
