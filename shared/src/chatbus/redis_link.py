"""One multiplexed Redis connection for the message path: pipelined commands, hiredis replies.

Every message crosses Redis a few times (the session's turn, its history, rate limits), and
redis-py spends ~100 µs of CPU on each command (pool checkout, retry wrapper, per-command
parsing), more than Redis itself. A :class:`RedisLink` writes every command of the process
on one socket and matches replies to callers in order, the way ioredis and redis-rs's
multiplexed connection do: concurrent callers share the socket, and a command costs ~10 µs.

It speaks request/reply commands, batches, MULTI/EXEC blocks written in one piece, SCAN and
Lua scripts; never blocking or pub/sub commands, which would hold the shared socket (the bus
does what pub/sub would). With a ``redis+sentinel://`` URL it asks Redis Sentinel where the
master is and follows a failover: a lost or demoted master (READONLY) makes the next command
reconnect through the Sentinels. Its errors are its own (:class:`RedisError` and below), so
the product does not import redis-py at all. A lost connection fails the commands in flight and
the next command reconnects.

Why a hand-written client, and why Sentinel: measured at 64 concurrent callers (client-process
CPU per SET), this link spends ~51 µs, valkey-glide 164 µs, redis-py with hiredis and a pool
272 µs. It is the only Redis client of the product. Redis holds only small state that can be
rebuilt (caches, counters, rate limits, session order); one master carries far more than the
~10k ops/s the platform needs, so high availability comes from Sentinel-managed replication —
failover with a simple client, and multi-key scripts need no hash-tag redesign — not from
Redis Cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from chatbus.deadline import current, remaining

Arg = str | bytes | int | float
# A command waiting out a failover gives up this long before its message's deadline, so the
# caller still gets a clear error in time.
ANSWER_MARGIN_S = 0.5
Reply = Any


class RedisError(Exception):
    """Anything that went wrong talking to Redis."""


class RedisConnectionError(RedisError, ConnectionError):
    """Redis cannot be reached, refused the credentials, or the connection was lost."""


class RedisTimeoutError(RedisConnectionError, TimeoutError):
    """Redis did not reply within the link's ``reply_timeout_s``."""


class ResponseError(RedisError):
    """Redis refused a command (a wrong type, NOPERM, a script error …)."""


class NoScriptError(ResponseError):
    """EVALSHA of a script Redis does not know (after a restart or SCRIPT FLUSH)."""


def encode_command(args: Sequence[Arg]) -> bytes:
    """The RESP encoding of one command."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        elif isinstance(a, bool):
            raise TypeError("Redis arguments cannot be bool; send 0/1 or a string")
        elif isinstance(a, int):
            b = b"%d" % a
        else:
            b = repr(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


def parse_url(url: str) -> dict[str, Any]:
    """host/port or path, username, password and db of a ``redis://``, ``rediss://`` or
    ``unix://`` URL (the db from the path, or ``?db=`` for a socket).

    ``redis+sentinel://[user:password@]host:port,host:port,…/<master name>[/db]`` names the
    Sentinels that watch a replicated Redis: the link asks them where the master is (the
    credentials are the master's; ``?sentinel_password=`` for Sentinels that require one).
    """
    u = urlsplit(url)
    if u.scheme in SENTINEL_SCHEMES:
        return _parse_sentinel_url(u)
    if u.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"not a Redis URL (redis://, rediss:// or unix://): {u.scheme}://…")
    out: dict[str, Any] = {
        "username": unquote(u.username) if u.username else None,
        "password": unquote(u.password) if u.password else None,
    }
    query = parse_qs(u.query)
    if u.scheme == "unix":
        out["path"] = u.path
        out["db"] = int(query.get("db", ["0"])[0])
    else:
        out["host"], out["port"] = u.hostname or "localhost", u.port or 6379
        db = u.path.lstrip("/") or query.get("db", ["0"])[0]
        out["db"] = int(db)
    return out


def _parse_sentinel_url(u: Any) -> dict[str, Any]:
    auth, _, hosts = u.netloc.rpartition("@")
    user, _, password = auth.partition(":")
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:  # no port given
            host, port = port, "26379"
        sentinels.append((host.strip("[]"), int(port)))
    parts = [p for p in u.path.split("/") if p]
    if not parts or not hosts:
        raise ValueError(
            "a Sentinel URL names its Sentinels and the master: "
            "redis+sentinel://host:26379,host:26379/<master name>[/db]"
        )
    query = parse_qs(u.query)
    return {
        "sentinels": sentinels,
        "master": unquote(parts[0]),
        "db": int(parts[1]) if len(parts) > 1 else 0,
        "username": unquote(user) if user else None,
        "password": unquote(password) if password else None,
        "sentinel_password": query.get("sentinel_password", [None])[0],
        "tls": u.scheme.startswith("rediss"),
    }


def _as_error(reply: hiredis.ReplyError) -> ResponseError:
    text = str(reply)
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    return ResponseError(text)


class _Waiter:
    """The caller of one command or one batch: ``left`` replies still to come."""

    __slots__ = ("fut", "left", "replies", "sent_at")

    def __init__(self, fut: asyncio.Future[list[Reply]], n: int, sent_at: float) -> None:
        self.fut, self.left, self.sent_at = fut, n, sent_at
        self.replies: list[Reply] = []


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=hiredis.ReplyError)
        self.waiters: deque[_Waiter] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.out: list[bytes] = []  # commands written in this loop iteration, sent together
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while (reply := self.reader.gets()) is not False:
            if not waiters:  # a reply nobody asked for: the stream is out of step
                self.abort(RedisConnectionError("unexpected reply from Redis"))
                return
            if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("READONLY"):
                # The master we talk to was demoted (a Sentinel failover): reconnect through
                # the Sentinels once this reply is delivered.
                self.loop.call_soon(self.abort, RedisConnectionError("Redis master demoted"))
            w = waiters[0]
            w.replies.append(reply)
            w.left -= 1
            if w.left == 0:
                waiters.popleft()
                if not w.fut.done():  # the caller may have been cancelled
                    w.fut.set_result(w.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))
        self.closed.set()

    def fail(self, exc: Exception) -> None:
        self.lost = self.lost or exc
        while self.waiters:
            w = self.waiters.popleft()
            if not w.fut.done():
                w.fut.set_exception(self.lost)

    def abort(self, exc: Exception) -> None:
        self.fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def send(self, payload: bytes, n: int) -> asyncio.Future[list[Reply]]:
        """Queue a command (or ``n`` of them) for the socket; the future gets the replies.

        Commands queued in the same loop iteration go out in one write (one syscall).
        """
        fut: asyncio.Future[list[Reply]] = self.loop.create_future()
        if self.lost is not None:
            fut.set_exception(self.lost)
            return fut
        self.waiters.append(_Waiter(fut, n, time.monotonic()))
        if not self.out:
            self.loop.call_soon(self.flush)
        self.out.append(payload)
        return fut

    def flush(self) -> None:
        out, self.out = self.out, []
        if self.transport is not None and self.lost is None and out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])


class RedisLink:
    """A shared, pipelined connection to the Redis at ``url`` (``redis://``, ``rediss://``,
    ``unix://``). A refused connection is tried again for ``connect_retry_s``, each try
    bounded by ``connect_timeout_s``. Once the link has reached Redis, losing it (a restart,
    a Sentinel failover) is waited out for up to ``outage_wait_s``: commands sent meanwhile
    wait for the new connection, each no longer than the deadline of the message being
    handled (:func:`chatbus.deadline.current`), then fail with :class:`RedisConnectionError`.
    ``reply_timeout_s`` bounds how long a command waits for its reply; past it the connection
    is dropped (failing what is in flight) and the next command reconnects."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        connect_retry_s: float = 1.0,
        reply_timeout_s: float = 10.0,
        outage_wait_s: float = 10.0,
    ) -> None:
        self.url = url
        self.options: dict[str, Any] = parse_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.connect_retry_s = connect_retry_s
        self.reply_timeout_s = reply_timeout_s
        self.outage_wait_s = max(outage_wait_s, connect_retry_s)
        self._reached = False  # connected once: a lost Redis is then waited for
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False

    # -- commands ----------------------------------------------------------------------------

    async def call(self, *args: Arg) -> Reply:
        """Send one command; its reply (bytes, int, list, None), or its error raised."""
        proto = await self._ready()
        replies = await self._send(proto, encode_command(args), 1)
        reply = replies[0]
        if isinstance(reply, hiredis.ReplyError):
            raise _as_error(reply)
        return reply

    async def batch(
        self, commands: Sequence[Sequence[Arg]], *, raise_errors: bool = True
    ) -> list[Reply]:
        """Send several commands in one write; their replies in order.

        Not a transaction: each command runs on its own. If any failed, the first error is
        raised once every reply is in (the others still ran); with ``raise_errors=False`` each
        failed command's error stands in its place in the list instead.
        """
        if not commands:
            return []
        proto = await self._ready()
        payload = b"".join(encode_command(c) for c in commands)
        replies = await self._send(proto, payload, len(commands))
        errors = [i for i, r in enumerate(replies) if isinstance(r, hiredis.ReplyError)]
        if errors and raise_errors:
            raise _as_error(replies[errors[0]])
        for i in errors:
            replies[i] = _as_error(replies[i])
        return replies

    async def transaction(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """Run ``commands`` as one MULTI/EXEC transaction; their replies in order.

        The block goes out in one write on the shared socket, so no other caller's command
        lands inside it. A command Redis refuses raises after the block (the others ran,
        as in Redis itself); a refused block (EXECABORT) runs nothing.
        """
        if not commands:
            return []
        proto = await self._ready()
        block = [("MULTI",), *commands, ("EXEC",)]
        payload = b"".join(encode_command(c) for c in block)
        replies = await self._send(proto, payload, len(block))
        results = replies[-1]
        if isinstance(results, hiredis.ReplyError):
            queued = next((r for r in replies[1:-1] if isinstance(r, hiredis.ReplyError)), None)
            raise _as_error(queued or results)
        for reply in results:
            if isinstance(reply, hiredis.ReplyError):
                raise _as_error(reply)
        return list(results)

    async def scan(self, match: str, count: int = 500) -> AsyncIterator[bytes]:
        """Every key matching ``match`` (SCAN: non-blocking, may repeat a key)."""
        cursor: Reply = b"0"
        while True:
            cursor, keys = await self.call("SCAN", cursor, "MATCH", match, "COUNT", count)
            for key in keys:
                yield key
            if cursor == b"0":
                return

    def script(self, source: str) -> LinkScript:
        return LinkScript(self, source)

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.fail(RedisConnectionError("Redis link closed"))
            proto.transport.close()

    # -- connection --------------------------------------------------------------------------

    async def _ready(self) -> _Protocol:
        proto = self._proto
        if proto is not None and proto.lost is None:
            return proto
        return await self._connect()

    def _send(self, proto: _Protocol, payload: bytes, n: int) -> asyncio.Future[list[Reply]]:
        fut = proto.send(payload, n)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(
                self.reply_timeout_s / 2, self._check_replies
            )
        return fut

    def _check_replies(self) -> None:
        """Every half timeout while commands are in flight: drop a connection gone silent."""
        self._watchdog = None
        proto = self._proto
        if proto is None or not proto.waiters:
            return
        if time.monotonic() - proto.waiters[0].sent_at > self.reply_timeout_s:
            proto.abort(RedisTimeoutError(f"no reply from Redis in {self.reply_timeout_s:g} s"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(
            self.reply_timeout_s / 2, self._check_replies
        )

    async def _connect(self) -> _Protocol:
        if self._closed:
            raise RedisConnectionError("Redis link closed")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._open())
        # What this caller may wait: its message's deadline, less a moment to answer.
        deadline = current()
        budget = None if deadline is None else max(0.0, remaining(deadline) - ANSWER_MARGIN_S)
        try:
            # Shielded: one caller giving up must not cancel the connection others wait for.
            async with asyncio.timeout(budget):
                return await asyncio.shield(self._connecting)
        except TimeoutError as e:
            if self._connecting.done():
                raise  # the connection's own timeout, already a RedisConnectionError's cause
            raise RedisConnectionError(
                "Redis is unavailable (restarting or failing over) until the deadline"
            ) from e

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (self.outage_wait_s if self._reached else self.connect_retry_s)
        delay = 0.05
        while True:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    proto = await self._dial(loop)
                return await self._greet(proto)
            except (OSError, TimeoutError) as e:  # refused, or (Sentinel) no master yet
                if loop.time() + delay > give_up:
                    raise RedisConnectionError(f"cannot connect to Redis: {e}") from e
                await asyncio.sleep(delay)  # retry pacing while Redis (re)starts or fails over
                delay = min(delay * 2, 0.5)

    async def _greet(self, proto: _Protocol) -> _Protocol:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self._hello(proto)
        except TimeoutError as e:
            proto.abort(RedisConnectionError("Redis did not answer AUTH/SELECT"))
            raise RedisConnectionError("Redis did not answer AUTH/SELECT in time") from e
        self._proto = proto
        self._reached = True
        return proto

    async def _dial(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        o = self.options
        if "sentinels" in o:
            host, port = await self._ask_sentinels()
            tls = ssl.create_default_context() if o["tls"] else None
            _, proto = await loop.create_connection(_Protocol, host, port, ssl=tls)
            return proto
        if "path" in o:
            _, proto = await loop.create_unix_connection(_Protocol, o["path"])
        else:
            tls = ssl.create_default_context() if self.url.startswith("rediss:") else None
            _, proto = await loop.create_connection(_Protocol, o["host"], o["port"], ssl=tls)
        return proto

    async def _ask_sentinels(self) -> tuple[str, int]:
        """The master's address, from the first Sentinel that knows it."""
        o = self.options
        ask: list[list[Arg]] = [["SENTINEL", "get-master-addr-by-name", o["master"]]]
        if o["sentinel_password"]:
            ask.insert(0, ["AUTH", o["sentinel_password"]])
        errors: list[str] = []
        for host, port in o["sentinels"]:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as e:
                errors.append(f"{host}:{port}: {e.strerror or e}")
                continue
            try:
                writer.write(b"".join(encode_command(c) for c in ask))
                parser = hiredis.Reader(replyError=hiredis.ReplyError)
                replies: list[Reply] = []
                while len(replies) < len(ask):
                    data = await reader.read(4096)
                    if not data:
                        break
                    parser.feed(data)
                    while (reply := parser.gets()) is not False:
                        replies.append(reply)
            finally:
                writer.close()
            addr = replies[-1] if len(replies) == len(ask) else None
            if isinstance(addr, list) and len(addr) == 2:
                return addr[0].decode(), int(addr[1])
            errors.append(f"{host}:{port}: no master named {o['master']!r}")
        raise OSError(f"no Sentinel knows the master: {'; '.join(errors)}")

    async def _hello(self, proto: _Protocol) -> None:
        o = self.options
        hello: list[list[Arg]] = []
        if o.get("password"):
            hello.append(["AUTH", o.get("username") or "default", o["password"]])
        if int(o.get("db") or 0):
            hello.append(["SELECT", int(o["db"])])
        if "sentinels" in o:
            hello.append(["ROLE"])  # a Sentinel may still name a master that was just demoted
        for cmd in hello:
            (reply,) = await proto.send(encode_command(cmd), 1)
            if isinstance(reply, hiredis.ReplyError):
                refused = RedisConnectionError(f"Redis refused {cmd[0]!s}: {reply}")
                proto.abort(refused)
                raise refused
            if cmd[0] == "ROLE" and reply[0] != b"master":
                proto.abort(RedisConnectionError("not the master yet"))
                raise OSError("the Sentinels name a Redis that is not the master (failover)")


class LinkScript:
    """A Lua script run by EVALSHA, loaded on first use (and again after a SCRIPT FLUSH)."""

    def __init__(self, link: RedisLink, source: str) -> None:
        self.link = link
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Reply:
        cmd = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await self.link.call(*cmd)
        except NoScriptError:
            await self.link.call("SCRIPT", "LOAD", self.source)
            return await self.link.call(*cmd)

    async def many(self, calls: Sequence[tuple[Sequence[Arg], Sequence[Arg]]]) -> list[Reply]:
        """Run the script once per ``(keys, args)`` in one write; the replies in order.

        Calls Redis did not know the script for (after a SCRIPT FLUSH) are loaded and run
        again; any other error is raised after the batch, as in :meth:`RedisLink.batch`.
        """
        cmds = [("EVALSHA", self.sha, len(k), *k, *a) for k, a in calls]
        replies = await self.link.batch(cmds, raise_errors=False)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            await self.link.call("SCRIPT", "LOAD", self.source)
            again = await self.link.batch([cmds[i] for i in missing], raise_errors=False)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
