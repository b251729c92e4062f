"""A tiny agent for gateway tests: answers ChatRequest through the fake LLM over real HTTP.

It keeps each session's history in memory (so tests can see what the model was sent),
streams ChatChunks when asked, answers AgentPing, and turns LLM errors into "upstream".
Run as a process: ``python -m gw_agent_stub AGENT`` with NATS_URL and OPENAI_BASE_URL set.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chatbus.bus import Bus
from chatbus.contracts.chat import (
    AgentInfo,
    AgentPing,
    ChatChunk,
    ChatReply,
    ChatRequest,
    Usage,
)
from chatbus.errors import RemoteError

AGENT_HEADER = "X-Chatbus-Agent"


@dataclass
class StubAgent:
    bus: Bus
    agent: str
    llm_url: str
    label: str = ""
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    history: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    seen: list[ChatRequest] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None
    # When set, streaming pauses after the first chunk until the test opens the gate.
    gate: asyncio.Event | None = None

    async def start(self) -> StubAgent:
        self.http = aiohttp.ClientSession()
        await self.bus.subscribe(
            ChatRequest.subject_for(self.agent), ChatRequest, self.answer, queue=self.agent
        )
        await self.bus.subscribe(AgentPing.subject, AgentPing, self.introduce)
        return self

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    async def introduce(self, ping: AgentPing) -> AgentInfo:
        return AgentInfo(
            id=self.agent,
            label=self.label or self.agent.title(),
            description=f"stub agent {self.agent}",
            instance_id=self.instance_id,
            model="stub-model",
        )

    async def answer(self, req: ChatRequest) -> ChatReply:
        self.seen.append(req)
        key = (req.tenant_id, req.session_id)
        past = self.history.setdefault(key, [])
        messages = [{"role": "system", "content": f"You are {self.agent}."}, *past]
        messages.append({"role": "user", "content": req.message})
        body: dict[str, Any] = {"model": "stub-model", "messages": messages}
        if req.stream_inbox:
            text, usage = await self._stream(req, body)
        else:
            text, usage = await self._complete(body)
        past += [{"role": "user", "content": req.message}, {"role": "assistant", "content": text}]
        return ChatReply(
            request_id=req.request_id,
            agent=self.agent,
            session_id=req.session_id,
            reply=text,
            model="stub-model",
            usage=usage,
        )

    async def _post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        assert self.http is not None
        resp = await self.http.post(
            f"{self.llm_url}/chat/completions", json=body, headers={AGENT_HEADER: self.agent}
        )
        if resp.status != 200:
            text = await resp.text()
            resp.release()
            raise RemoteError("upstream", f"LLM answered {resp.status}: {text[:100]}")
        return resp

    async def _complete(self, body: dict[str, Any]) -> tuple[str, Usage]:
        resp = await self._post(body)
        data = await resp.json()
        u = data.get("usage") or {}
        return data["choices"][0]["message"]["content"], Usage(
            prompt_tokens=u.get("prompt_tokens", 0),
            completion_tokens=u.get("completion_tokens", 0),
        )

    async def _stream(self, req: ChatRequest, body: dict[str, Any]) -> tuple[str, Usage]:
        assert req.stream_inbox
        resp = await self._post({**body, "stream": True})
        parts: list[str] = []
        usage = Usage()
        async for line in resp.content:
            text = line.decode().strip()
            if not text.startswith("data: ") or text == "data: [DONE]":
                continue
            data = json.loads(text[6:])
            if data.get("usage"):
                usage = Usage(
                    prompt_tokens=data["usage"]["prompt_tokens"],
                    completion_tokens=data["usage"]["completion_tokens"],
                )
            for choice in data.get("choices", []):
                delta = choice.get("delta", {}).get("content")
                if delta:
                    chunk = ChatChunk(
                        request_id=req.request_id, index=len(parts), delta=delta, agent=self.agent
                    )
                    await self.bus.publish(chunk, req.stream_inbox)
                    parts.append(delta)
                    if self.gate is not None and len(parts) == 1:
                        await self.gate.wait()
        done = ChatChunk(request_id=req.request_id, index=len(parts), agent=self.agent, done=True)
        await self.bus.publish(done, req.stream_inbox)
        return "".join(parts), usage


async def main(agent: str) -> None:
    bus = await Bus.connect(os.environ["NATS_URL"], service=f"stub-{agent}")
    stub = await StubAgent(bus, agent, os.environ["OPENAI_BASE_URL"]).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("stub agent ready", flush=True)  # noqa: T201 - the parent waits for this line
    await stop.wait()
    await bus.drain()
    await stub.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
