"""What the handler reads about a session before answering: route, recent turns, notes.

In production the three come from Redis in one round trip (:class:`RedisSessionReader`);
:class:`PortsReader` asks the separate ports instead (what unit tests' fakes provide).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chatbus.agent.events import NOTES_SHOWN
from chatbus.agent.handoff import route_key
from chatbus.agent.history import (
    history_key,
    parse_turns,
    remembered_key,
    user_remembered_key,
)
from chatbus.agent.ports import Completion
from chatbus.agent.step_results import decode_or_none, step_key
from chatbus.contracts.chat import ChatRequest, Turn
from chatbus.redis_link import Arg, RedisLink

if TYPE_CHECKING:
    from chatbus.agent.events import CustomerNotes
    from chatbus.agent.handler import Notes
    from chatbus.agent.handoff import Router
    from chatbus.agent.ports import History


@dataclass
class SessionState:
    route: str | None = None  # the agent the session was handed to, if any
    recent: list[Turn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The first model call of an earlier attempt of this request, when the reader looked
    # (``looked_up_first_step``): a redelivery reuses it instead of paying again.
    first_step: Completion | None = None
    looked_up_first_step: bool = False
    # the session has turns older than ``recent`` (so long-term recall may find something)
    older: bool = True
    # the requesting user has turns in memory besides ``recent`` (other sessions, imports)
    user_older: bool = True


class SessionReader(Protocol):
    async def load(self, req: ChatRequest, recent: int) -> SessionState: ...


class PortsReader:
    """Reads through the separate History / Router / Notes ports, concurrently."""

    def __init__(self, history: History, router: Router | None, notes: Notes | None) -> None:
        self.history, self.router, self.notes = history, router, notes

    async def load(self, req: ChatRequest, recent: int) -> SessionState:
        async def nothing() -> Any:
            return None

        route, turns, notes = await asyncio.gather(
            self.router.route_of(req.tenant_id, req.session_id) if self.router else nothing(),
            self.history.recent(req.tenant_id, req.session_id, recent + 1 if recent > 0 else 0),
            self.notes.for_request(req) if self.notes else nothing(),
        )
        # no counts of what memory holds here: a session's past is what its history shows
        older = recent <= 0 or len(turns) > recent
        shown = turns[-recent:] if recent > 0 else []
        return SessionState(route, shown, notes or [], older=older, user_older=bool(req.user_id))


class RedisSessionReader:
    """One pipelined Redis round trip for the route, the recent turns and the notes.

    With ``remembered`` (long-term memory is on, :class:`~chatbus.agent.history.RedisHistory`
    counts what it holds) it reads those counts too: the session (and user) has an older past
    when memory holds more turns than the prompt shows. Without, only history says so.
    """

    def __init__(
        self,
        redis: RedisLink,
        *,
        notes: CustomerNotes | None,
        with_route: bool,
        with_first_step: bool = False,
        remembered: bool = False,
    ) -> None:
        self.redis, self.notes, self.with_route = redis, notes, with_route
        self.with_first_step = with_first_step
        self.remembered = remembered

    async def load(self, req: ChatRequest, recent: int) -> SessionState:
        note_keys = (
            self.notes.keys_for(req.tenant_id, req.user_id, req.session_id) if self.notes else []
        )
        commands: list[tuple[Arg, ...]] = []
        if self.with_route:
            commands.append(("GET", route_key(req.tenant_id, req.session_id)))
        if recent > 0:  # one more than shown: is there anything older?
            key = history_key(req.tenant_id, req.session_id)
            commands.append(("LRANGE", key, -(recent + 1), -1))
        if self.with_first_step:
            commands.append(("GET", step_key(req, req.agent, 0)))
        if self.remembered:
            commands.append(("GET", remembered_key(req.tenant_id, req.session_id)))
            if req.user_id:
                commands.append(("GET", user_remembered_key(req.tenant_id, req.user_id)))
        commands += [("HGETALL", key) for key in note_keys]
        results = await self.redis.batch(commands)
        older = recent <= 0 and not self.remembered
        state = SessionState(older=older, user_older=bool(req.user_id))
        if self.with_route:
            raw = results.pop(0)
            state.route = raw.decode() if isinstance(raw, bytes) else raw
        if recent > 0:
            raw = results.pop(0)
            state.older = len(raw) > recent
            state.recent = parse_turns(raw[-recent:])
        if self.with_first_step:
            state.first_step = decode_or_none(results.pop(0))
            state.looked_up_first_step = True
        if self.remembered:
            # memory holds more than the prompt shows: an imported or expired past, or turns
            # beyond the recent window; a new session holds nothing and is never searched
            shown = len(state.recent)
            in_memory = _count(results.pop(0))
            state.older = state.older or in_memory > shown
            if req.user_id:
                state.user_older = _count(results.pop(0)) > shown
        if self.notes is not None:
            state.notes = self.notes.ordered(results)[-NOTES_SHOWN:]
        return state


def _count(raw: bytes | str | int | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0
