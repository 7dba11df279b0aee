"""The FastAGI server: ``AGI(agi://gateway:4573/route)`` sessions from the dialplan.

One session, as Asterisk 22 speaks it (``../shared/asterisk-traces/agi-route-session.txt``):

1. Asterisk connects and sends the ``agi_*`` header, one ``agi_name: value`` line each,
   ended by an empty line;
2. the server sends commands, one line each (``SET VARIABLE NAME "value"``), and reads one
   reply per command (``200 result=1``);
3. the server closes the connection; the dialplan continues with ``AGISTATUS=SUCCESS``.

Asterisk may instead answer ``HANGUP`` (the caller hung up), ``511`` (dead channel) or
``510``/``520`` (command not understood), or close the socket. Every session runs under
its own time limits (the whole header within ``header_timeout``, the replies within
``reply_timeout``, the session within ``session_timeout``), so a peer that sends garbage,
stops half-way or trickles bytes (slowloris) is closed on its own without touching the
other sessions; the routing decision itself is bounded by the service's deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Protocol

from cti.routing.engine import channel_variables
from cti.routing.service import CallInfo, Outcome

log = logging.getLogger("tamas.agi")

SCRIPT = "route"


class AgiProtocolError(Exception):
    """The peer does not speak AGI (garbage, oversize or truncated header)."""


class Router(Protocol):
    async def decide(self, call: CallInfo, started: float | None = None) -> Outcome: ...

    def store(self, call: CallInfo, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class AgiLimits:
    header_timeout: float = 2.0  # Asterisk sends the header at once, right after connecting
    reply_timeout: float = 2.0
    session_timeout: float = 10.0
    max_header_bytes: int = 16384
    max_sessions: int = 4096


def quote(value: str) -> str:
    """An AGI argument: in double quotes, backslash and quote escaped, no line breaks."""
    clean = value.replace("\\", "\\\\").replace('"', '\\"')
    clean = clean.replace("\r", " ").replace("\n", " ").replace("\x00", "")
    return f'"{clean}"'


def set_variable(name: str, value: str) -> bytes:
    return f"SET VARIABLE {name} {quote(value)}\n".encode()


_HEADER_LINE = re.compile(r"(agi_\w+):[ ]?([^\n]*?)\r?$", re.M)


def parse_header(raw: bytes) -> dict[str, str]:
    """The ``agi_*`` header (without its final empty line) as a dict. Raises
    AgiProtocolError on anything else, so garbage is refused before any work."""
    text = raw.decode("utf-8", "replace")
    pairs = _HEADER_LINE.findall(text)
    if len(pairs) != sum(1 for line in text.split("\n") if line and line != "\r"):
        bad = next(
            (x for x in text.split("\n") if x.strip() and not _HEADER_LINE.fullmatch(x)), "?"
        )
        raise AgiProtocolError(f"not an AGI header line: {bad[:60]!r}")
    env = dict(pairs)
    if "agi_request" not in env and "agi_network_script" not in env:
        raise AgiProtocolError("AGI header without agi_request")
    return env


def script_of(env: dict[str, str]) -> str:
    """``route`` for ``agi://host:4573/route`` (with or without arguments after ``?``)."""
    script = env.get("agi_network_script")
    if script is None:
        request = env.get("agi_request", "")
        script = request.split("://", 1)[-1].partition("/")[2]
    return script.split("?", 1)[0].strip("/")


class AgiServer:
    """Asyncio FastAGI server for the ``route`` script.

    Each connection is an :class:`AgiSession` protocol: a small state machine (header,
    deciding, commands, done) fed by the socket, so a command's reply is handled as soon as
    it arrives, without a task switch per line.
    """

    def __init__(
        self,
        router: Router,
        host: str = "127.0.0.1",
        port: int = 4573,
        limits: AgiLimits | None = None,
    ) -> None:
        self.router = router
        self.host = host
        self.requested_port = port
        self.limits = limits or AgiLimits()
        self.counters: collections.Counter[str] = collections.Counter()
        self._server: asyncio.Server | None = None
        self.sessions: set[AgiSession] = set()
        self._idle = asyncio.Event()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self.requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active(self) -> int:
        return len(self.sessions)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AgiSession(self),
            self.host,
            self.requested_port,
            backlog=1024,
            reuse_address=True,
        )
        log.info("FastAGI server listening", extra={"host": self.host, "port": self.port})

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting; let sessions in progress finish for ``grace`` seconds, then cut
        the rest (their decisions are stored all the same)."""
        if self._server is not None:
            self._server.close()
        if self.sessions:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
            for session in list(self.sessions):
                session.abort()
            await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    def _ended(self, session: AgiSession) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._idle.set()


HEADER, DECIDING, COMMANDS, DONE = "header", "deciding", "commands", "done"


class AgiSession(asyncio.Protocol):
    """One FastAGI connection."""

    def __init__(self, server: AgiServer) -> None:
        self.server = server
        self.limits = server.limits
        self.counters = server.counters
        self.state = HEADER
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None  # the deadline of the current phase
        self.session_timer: asyncio.TimerHandle | None = None
        self.commands: list[tuple[str, str]] = []
        self.sent = 0
        self.in_usage = False  # inside a multi-line 520 answer
        self.call: CallInfo | None = None
        self.outcome: Outcome | None = None
        self.stored = False
        self.peer = ""

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        server = self.server
        server.sessions.add(self)
        self.counters["sessions"] += 1
        if len(server.sessions) > self.limits.max_sessions:
            self.counters["refused"] += 1
            log.warning("too many AGI sessions; refused one (the dialplan falls back)")
            self._close()
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.limits.header_timeout, self._header_timeout)
        self.session_timer = loop.call_later(self.limits.session_timeout, self._session_timeout)

    def data_received(self, data: bytes) -> None:
        if self.state == DONE:
            return
        self.buf += data
        if self.state == HEADER:
            self._header()
        elif self.state == COMMANDS:
            self._replies()
        # DECIDING: keep what arrives (a HANGUP) for when the commands start

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self.state == HEADER:
            if self.buf:
                self.counters["malformed"] += 1
                log.warning("connection closed inside the AGI header", extra={"peer": self.peer})
        elif self.state == COMMANDS:
            self.counters["hangup"] += 1  # Asterisk closed: the channel is gone
        self.state = DONE
        self._store()
        self.server._ended(self)

    # -- phases ------------------------------------------------------------------------------------

    def _header(self) -> None:
        end = self.buf.find(b"\n\n")
        if end < 0:
            if len(self.buf) > self.limits.max_header_bytes:
                self._reject("AGI header too large; closed")
            return
        raw = bytes(self.buf[: end + 2])
        del self.buf[: end + 2]
        try:
            env = parse_header(raw)
        except AgiProtocolError as exc:
            self._reject("malformed AGI header; closed", error=str(exc))
            return
        started = time.perf_counter()
        script = script_of(env)
        if script != SCRIPT:
            self.counters["unknown_script"] += 1
            log.warning("unknown AGI script; closed", extra={"script": script[:64]})
            self._close()
            return
        self._cancel_timer()
        self.state = DECIDING
        self.call = CallInfo.from_agi(env)
        asyncio.get_running_loop().create_task(self._decide(self.call, started))

    async def _decide(self, call: CallInfo, started: float) -> None:
        try:
            self.outcome = await self.server.router.decide(call, started)
        except Exception:  # the router never raises; a bug must not leave the call waiting
            self.counters["errors"] += 1
            log.exception("AGI routing failed", extra={"peer": self.peer})
            self._close()
            return
        if self.state == DONE:  # the peer left while we were deciding
            self._store()
            return
        self.commands = channel_variables(self.outcome.decision)
        self.state = COMMANDS
        # One timer for all the replies: Asterisk answers SET VARIABLE in microseconds.
        self.timer = asyncio.get_running_loop().call_later(
            self.limits.reply_timeout, self._reply_timeout
        )
        self._next()
        if self.buf:
            self._replies()

    def _next(self) -> None:
        if self.sent >= len(self.commands):
            self.counters["routed"] += 1
            self._close()
            return
        name, value = self.commands[self.sent]
        self.sent += 1
        assert self.transport is not None
        self.transport.write(set_variable(name, value))

    def _replies(self) -> None:
        while self.state == COMMANDS:
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > self.limits.max_header_bytes:
                    self._reject("AGI reply too long; closed")
                return
            line = bytes(self.buf[:end]).decode("utf-8", "replace").rstrip("\r")
            del self.buf[: end + 1]
            self._reply(line)

    def _reply(self, text: str) -> None:
        if self.in_usage:  # "520-Invalid command syntax..." until "520 End of proper usage."
            if text.startswith("520 "):
                self.in_usage = False
                self._next()
            return
        if text.startswith("HANGUP"):
            self.counters["hangup"] += 1
            self._close()
            return
        code = text[:3]
        if not code.isdigit():
            self._reject("malformed AGI reply; closed", error=text[:60])
            return
        if code == "511":  # dead channel
            self.counters["hangup"] += 1
            self._close()
            return
        if code != "200":
            self.counters[f"reply_{code}"] += 1
            log.warning(
                "AGI command refused",
                extra={"variable": self.commands[self.sent - 1][0], "code": code},
            )
            if text.startswith("520-"):
                self.in_usage = True
                return
        self._next()

    # -- endings ---------------------------------------------------------------------------------

    def _header_timeout(self) -> None:
        self.counters["header_timeout"] += 1
        log.warning("AGI header incomplete in time; closed", extra={"peer": self.peer})
        self._close()

    def _reply_timeout(self) -> None:
        if self.state == COMMANDS:
            self.counters["reply_timeout"] += 1
            log.warning("no reply to an AGI command in time; closed", extra={"peer": self.peer})
            self._close()

    def _session_timeout(self) -> None:
        if self.state != DONE:
            self.counters["session_timeout"] += 1
            log.warning("AGI session took too long; closed", extra={"peer": self.peer})
            self._close()

    def _reject(self, message: str, **extra: str) -> None:
        self.counters["malformed"] += 1
        log.warning(message, extra={"peer": self.peer, **extra})
        self.buf.clear()
        self._close()

    def _store(self) -> None:
        # Stored whatever happened to the session: the decision was made for this call.
        if not self.stored and self.call is not None and self.outcome is not None:
            self.stored = True
            self.server.router.store(self.call, self.outcome)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _cancel_timers(self) -> None:
        self._cancel_timer()
        if self.session_timer is not None:
            self.session_timer.cancel()
            self.session_timer = None

    def _close(self) -> None:
        """Done: store the decision, close the connection (aborted if the peer does not
        take the last bytes within a second)."""
        was_done = self.state == DONE
        self.state = DONE
        self._cancel_timers()
        self._store()
        transport = self.transport
        if transport is None or was_done or transport.is_closing():
            return
        transport.close()
        self.timer = asyncio.get_running_loop().call_later(1.0, transport.abort)

    def abort(self) -> None:
        self.state = DONE
        self._cancel_timers()
        self._store()
        if self.transport is not None:
            self.transport.abort()
