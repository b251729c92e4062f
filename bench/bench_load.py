"""Load for bench/run.py: wrk (or aiohttp) against the chat route, and reading results back."""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

DEEP_SESSIONS = 64  # chats of the long-session run
DEEP_PREFILL = 25  # messages (50 turns) each before it is measured
COLOURS = ["red", "green", "blue", "yellow", "violet", "orange", "teal"]


@dataclass
class LoadResult:
    count: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


# "new": every message its own session; "deep": the DEEP_SESSIONS prefilled sessions, in turn.
WRK_SCRIPT = r"""
local threads = 0
counter = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  counter = counter + 1
  local session
  if KIND == "deep" then
    session = string.format("deep-%d", (counter * NTHREADS + tid) % SESSIONS)
  else
    session = string.format("new-%d-%d-%d", RUN, tid, counter)
  end
  local body = string.format(
    '{"message":"Hello, this is message %d of chat %d","session_id":"%s"}', counter, tid, session)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %f %f %f\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


async def drive_wrk(url: str, kind: str, concurrency: int, seconds: float) -> LoadResult:
    threads = min(2, concurrency)
    script = (
        WRK_SCRIPT.replace("KIND", repr(kind))
        .replace("NTHREADS", str(threads))
        .replace("SESSIONS", str(DEEP_SESSIONS))
        .replace("RUN", str(time.time_ns() % 1_000_000_007))
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cpu0 = _children_cpu()
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        f.name,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    line = next((x for x in out.decode().splitlines() if x.startswith("RESULT")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.decode()[-500:]}")
    n, errors, p50, p99, duration = line.split()[1:]
    return LoadResult(
        int(n),
        int(errors),
        float(duration) / 1e6,
        float(p50) / 1000,
        float(p99) / 1000,
        client_cpu=_children_cpu() - cpu0,
    )


def body(kind: str, w: int, i: int, run: int) -> dict[str, str]:
    session = f"deep-{(w + i) % DEEP_SESSIONS}" if kind == "deep" else f"new-{run}-{w}-{i}"
    # each text once: the same text in many chats would be embedded once (memory's cache)
    return {"message": f"Hello, this is message {i} of chat {w}", "session_id": session}


async def drive_python(url: str, kind: str, concurrency: int, seconds: float) -> LoadResult:
    """The same load from this process (when wrk is missing; its CPU competes with the stack)."""
    latencies: list[float] = []
    errors = 0
    run = time.time_ns()
    cpu0 = time.process_time()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        deadline = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with http.post(url, json=body(kind, w, i, run)) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - started)
                i += concurrency

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - t0
    xs = sorted(latencies) or [float("nan")]
    return LoadResult(
        len(latencies),
        errors,
        elapsed,
        xs[len(xs) // 2] * 1000,
        xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1000,
        client_cpu=time.process_time() - cpu0,
    )


async def prefill_deep(http: aiohttp.ClientSession, url: str, args: Any) -> None:
    """Give each long-session chat DEEP_PREFILL messages (two turns each) before measuring."""

    async def chat(s: int) -> None:
        for i in range(DEEP_PREFILL):
            msg = f"Earlier message {i} of chat {s}: my favourite colour was {COLOURS[(s + i) % 7]}"
            async with http.post(url, json={"message": msg, "session_id": f"deep-{s}"}) as r:
                await r.read()

    await asyncio.gather(*(chat(s) for s in range(DEEP_SESSIONS)))


Buckets = dict[float, float]


async def search_buckets(memory_url: str) -> Buckets:
    """The cumulative buckets of the memory service's search-time histogram."""
    out: Buckets = {}
    async with aiohttp.ClientSession() as http, http.get(f"{memory_url}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith("chatbus_memory_search_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


async def search_quantiles(memory_url: str, since: Any = None) -> Any:
    """Buckets now (``since`` None), else (p50, p99) in ms of the searches since ``since``."""
    now = await search_buckets(memory_url)
    if since is None:
        return now
    delta = sorted((le, c - since.get(le, 0.0)) for le, c in now.items())
    total = delta[-1][1] if delta else 0.0
    if not total:
        return (float("nan"), float("nan"))

    def q(x: float) -> float:
        lo_le, lo_c = 0.0, 0.0
        for le, c in delta:
            if c >= x * total:
                if le == float("inf"):
                    return lo_le * 1000
                span = (x * total - lo_c) / max(c - lo_c, 1e-9)
                return (lo_le + (le - lo_le) * span) * 1000  # linear within the bucket
            lo_le, lo_c = le, c
        return lo_le * 1000

    return (q(0.5), q(0.99))
