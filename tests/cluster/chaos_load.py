"""Load for the chaos test: sync chats and async jobs, each in its own session, and the tally.

Every request carries a token (``chaos-<fault>-<kind>-<n>``) in its message and uses it as its
session id, so the fake model's recorded requests count model calls per request, and the
memory service's stored turns per request can be read back through the gateway.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chatbus_dev.offline_llm import OfflineLLM

TOKEN = re.compile(r"chaos-[a-z]+-[a-z]+-\d+")


@dataclass
class Outcome:
    token: str
    started: float
    status: int | None = None  # HTTP status of the chat (sync) or of the submit (async)
    error: str = ""  # a documented error type, or the transport error
    job_id: str = ""
    finished: float | None = None
    done: bool = False  # answered: a 200 reply, or a job record that says "done"
    clear: bool = False  # refused with the documented JSON error body (or a failed job record)
    job_status: str = ""  # the job record's last status


@dataclass
class FaultRow:
    fault: str
    in_flight: int
    answered: int
    clear_errors: int
    lost: int
    duplicated_calls: int
    recovery_s: float
    jobs_done_s: float = 0.0  # from the kill until every job accepted so far was done

    def line(self) -> str:
        return (
            f"| {self.fault} | {self.in_flight} | {self.answered} | {self.clear_errors} | "
            f"{self.lost} | {self.duplicated_calls} | {self.recovery_s:.1f} s | "
            f"{self.jobs_done_s:.1f} s |"
        )


@dataclass
class Load:
    gateways: list[str]
    agent: str
    http: aiohttp.ClientSession
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    n: int = 0

    def _url(self, i: int) -> str:
        return self.gateways[i % len(self.gateways)]

    async def chat(self, fault: str, kind: str = "sync", gw: int | None = None) -> Outcome:
        """One chat (``kind`` ending in "async": a job), through gateway ``gw`` or the next."""
        self.n += 1
        token = f"chaos-{fault}-{kind}-{self.n}"
        o = self.outcomes[token] = Outcome(token, time.monotonic())
        body = {"message": f"Please answer {token}", "session_id": token}
        url = f"{self._url(self.n if gw is None else gw)}/api/chat/{self.agent}"
        if kind.endswith("async"):
            url += "?mode=async"
        try:
            async with self.http.post(url, json=body) as r:
                o.status = r.status
                data: dict[str, Any] = await r.json()
        except (aiohttp.ClientError, TimeoutError) as e:
            o.error = type(e).__name__
            return o
        finally:
            o.finished = time.monotonic()
        if r.status == 200:
            o.done = token in data["reply"]
        elif r.status == 202:
            o.job_id = data["job_id"]
        elif isinstance(data.get("error"), dict) and data["error"].get("type"):
            o.error, o.clear = str(data["error"]["type"]), True
        else:
            o.error = f"undocumented {r.status}"
        return o

    def finished(self, token: str) -> bool:
        """The request got its answer (a job: its record said so when last read)."""
        o = self.outcomes.get(token)
        return o is not None and o.done

    async def settle_jobs(self, timeout: float) -> None:
        """Poll every accepted job (through either gateway) until each is finished."""
        end = time.monotonic() + timeout
        pending = [o for o in self.outcomes.values() if o.job_id and not o.done]
        i = 0
        while pending and time.monotonic() < end:
            for o in list(pending):
                i += 1
                try:
                    async with self.http.get(f"{self._url(i)}/api/jobs/{o.job_id}") as r:
                        rec = await r.json() if r.status == 200 else {"http": r.status}
                        o.job_status = str(rec.get("status") or rec)
                except (aiohttp.ClientError, TimeoutError):
                    continue
                if rec.get("status") in ("done", "failed", "dead_lettered"):
                    o.done = rec["status"] == "done"
                    o.error = "" if o.done else rec["status"]
                    o.clear = not o.done
                    o.finished = time.monotonic()
                    pending.remove(o)
            await asyncio.sleep(0.2)  # allowed: polling job records other processes update

    async def stored_turns(self, token: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.gateways[0]}/api/sessions/{token}/messages") as r:
            assert r.status == 200, await r.text()
            return list((await r.json())["messages"])

    async def wait_turns(self, tokens: list[str], timeout: float) -> dict[str, int]:
        """How many turns memory stores per session, once each has its two (bounded poll)."""
        end, counts = time.monotonic() + timeout, {}
        for token in tokens:
            while True:
                counts[token] = len(await self.stored_turns(token))
                if counts[token] >= 2 or time.monotonic() > end:
                    break
                await asyncio.sleep(0.2)  # allowed: memory applies queued writes on its own
        return counts


def model_calls(llm: OfflineLLM) -> Counter[str]:
    """Chat-completion calls the fake model received, per request token."""
    calls: Counter[str] = Counter()
    for rec in llm.requests:
        users = [m for m in rec.messages if m.get("role") == "user"]
        found = TOKEN.search(str(users[-1].get("content"))) if users else None
        if found:
            calls[found.group(0)] += 1
    return calls


async def recovery(load: Load, fault: str, since: float, timeout: float = 60.0) -> float:
    """Seconds from ``since`` (the kill) until, through each gateway, a new chat is answered
    and a new job is accepted (the jobs themselves are checked with the others at the end)."""
    end = time.monotonic() + timeout
    wanted = [(kind, gw) for kind in ("probe", "probeasync") for gw in range(len(load.gateways))]
    while wanted and time.monotonic() < end:
        kind, gw = wanted[0]
        o = await load.chat(fault, kind, gw)
        if o.done or o.job_id:
            wanted.pop(0)
        else:
            await asyncio.sleep(0.1)  # allowed: pacing probes while the fault lasts
    assert not wanted, f"{fault}: no recovery in {timeout} s"
    return time.monotonic() - since
