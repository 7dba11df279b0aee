"""The SIMULATED PBX: an asyncio TCP server that speaks AMI like Asterisk 22.

It answers the actions the gateway uses with Asterisk's exact response layout (checked
against the traces and Asterisk's manager.c), emits events for generated calls, can replay
a recorded trace byte for byte, and has knobs to misbehave on purpose (drop connections,
restart, ignore Ping, delay responses, black-hole the link) so reconnect and resync logic
can be tested without a real PBX.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from cti.ami_message import AmiMessage
from cti.ami_protocol import AmiParser
from cti.simulator.actions import PbxActions
from cti.simulator.calls import CallEngine
from cti.simulator.model import PbxConfig, PbxState
from cti.simulator.replay import Chunking, Trace, next_boundary
from cti.simulator.session import Session, event_mask
from cti.simulator.wire import Pairs, error, event, frame, response

log = logging.getLogger("cti.simulator")
PERSIAN_NAMES = ["علی رضایی", "زهرا کاظمی", "مریم حسینی", "Sara Ahmadi", "Reza Karimi", "Nima"]


Handler = Callable[[Session, AmiMessage], Awaitable[bool | None]]


class SimulatedPbx(PbxActions):
    """A fake Asterisk for tests, benchmarks and demos; listens on 127.0.0.1 by default.

    ``port=0`` picks a free port; read :attr:`port` after :meth:`start` (or ``async with``).
    ``time_scale`` shrinks every simulated duration (0.01: a 6 s call lasts 60 ms); times in
    events (HoldTime, Duration...) stay in simulated seconds.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "gateway",
        secret: str = "labsecret",
        config: PbxConfig | None = None,
        time_scale: float = 1.0,
        replay: Trace | bytes | str | Path | None = None,
        chunking: Chunking | None = None,
        chunk_delay: float = 0.0,
        close_after_replay: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.secret = secret
        self.config = config or PbxConfig()
        self.time_scale = time_scale
        if isinstance(replay, str | Path):
            replay = Trace.load(replay)
        elif isinstance(replay, bytes):
            replay = Trace.parse(replay)
        self.replay = replay
        self.chunking = chunking or Chunking()
        self.chunk_delay = chunk_delay
        self.close_after_replay = close_after_replay
        # misbehaviour knobs
        self.ping_enabled = True
        self.response_delay = 0.0
        self.silent = False
        # bookkeeping
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        self.state = PbxState(self.config, self.now())
        self.engine = CallEngine(self.state, self.broadcast, self.now, time_scale)
        self.sessions: set[Session] = set()
        self.actions: deque[AmiMessage] = deque(maxlen=10000)
        self.logins = 0
        self._login_cond = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._traffic: asyncio.Task[None] | None = None
        self._handlers: dict[str, Handler] = {
            name[3:].lower(): getattr(self, name) for name in dir(self) if name.startswith("_a_")
        }
        self._handlers["pausemixmonitor"] = self._a_mixmonitormute
        # Generated calls (see CallEngine for the parameters); they return a SimCall handle.
        self.inbound_call = self.engine.inbound_call
        self.click_to_call = self.engine.click_to_call

    # -- lifecycle -------------------------------------------------------------------------

    def now(self) -> float:
        """Simulated wall-clock time (runs ``1/time_scale`` times faster than real time)."""
        return self._wall0 + (time.monotonic() - self._mono0) / self.time_scale

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        mode = "replaying a recorded trace" if self.replay else f"{self.config.tech} generator"
        log.warning(
            "SIMULATED PBX listening on %s:%d (%s) - this is not a real Asterisk",
            self.host, self.port, mode,
        )  # fmt: skip

    async def stop(self) -> None:
        self.stop_traffic()
        self.engine.cancel_all()
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimulatedPbx:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- controls for tests ----------------------------------------------------------------

    def drop_connections(self) -> int:
        """Network loss: reset every client connection; calls in progress carry on."""
        n = 0
        for s in list(self.sessions):
            if s.replay_task is not None:
                s.replay_task.cancel()
            transport = s.writer.transport
            if not transport.is_closing():
                transport.abort()
                n += 1
        self.sessions.clear()
        return n

    async def restart(self, downtime: float = 0.0, *, graceful: bool = True) -> None:
        """Asterisk restart: Shutdown event, connections closed, calls gone, new uniqueids.

        Clients that log in again get FullyBooted with a small Uptime.
        """
        if graceful:
            busy = bool(self.state.channels)
            self.broadcast(
                event(
                    "Shutdown",
                    "system,all",
                    [("Shutdown", "Uncleanly" if busy else "Cleanly"), ("Restart", "True")],
                )
            )
            await self._flush_all()
        self.stop_traffic()
        self.engine.cancel_all()
        self.drop_connections()
        if downtime > 0 and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            await asyncio.sleep(downtime)
            self._server = await asyncio.start_server(self._client, self.host, self.port)
        now = self.now()
        self.state.boot(now, min_epoch=max(int(now), self.state.epoch_floor) + 1)

    async def _flush_all(self) -> None:
        for s in list(self.sessions):
            with contextlib.suppress(ConnectionError):
                await s.writer.drain()

    async def wait_for_sessions(self, count: int = 1, limit: float = 5.0) -> None:
        """Until ``count`` clients are logged in (handy right after a client connects)."""
        async with asyncio.timeout(limit), self._login_cond:
            await self._login_cond.wait_for(
                lambda: sum(1 for s in self.sessions if s.authenticated) >= count
            )

    # -- generated calls -------------------------------------------------------------------

    def start_traffic(
        self,
        calls_per_minute: float,
        *,
        mix: Mapping[str, float] | None = None,
        seed: int | None = None,
    ) -> None:
        """Background load: Poisson arrivals of answered / abandoned / click-to-call calls."""
        self.stop_traffic()
        weights = dict(mix or {"answered": 0.6, "abandoned": 0.25, "click_to_call": 0.15})
        rng = random.Random(seed)

        async def run() -> None:
            while True:
                await asyncio.sleep(rng.expovariate(calls_per_minute / 60.0) * self.time_scale)
                kind = rng.choices(list(weights), list(weights.values()))[0]
                number = "0912" + "".join(rng.choice("0123456789") for _ in range(7))
                name = rng.choice(PERSIAN_NAMES)
                if kind == "click_to_call" and self.config.agents:
                    agent = rng.choice(self.config.agents).extension
                    self.click_to_call(agent, number, talk=rng.uniform(5, 60))
                else:
                    self.inbound_call(
                        number,
                        name,
                        talk=rng.uniform(5, 120),
                        patience=rng.uniform(3, 25) if kind == "abandoned" else 120.0,
                        agents_answer=kind != "abandoned",
                    )

        self._traffic = asyncio.get_running_loop().create_task(run())

    def stop_traffic(self) -> None:
        if self._traffic is not None:
            self._traffic.cancel()
            self._traffic = None

    # -- output ----------------------------------------------------------------------------

    def broadcast(self, pairs: Pairs) -> None:
        """Send an event to every logged-in session that wants it."""
        if self.silent or not self.sessions:
            return
        data = frame(pairs)
        for s in self.sessions:
            if s.authenticated and s.wants(pairs):
                s.send(data)

    def _send(self, s: Session, *messages: Pairs) -> None:
        if not self.silent:
            s.send(b"".join(frame(m) for m in messages))

    # -- connection handling ---------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        s = Session(writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        self.sessions.add(s)
        banner = (
            self.replay.banner
            if self.replay and self.replay.banner
            else f"Asterisk Call Manager/{self.config.ami_version}\r\n".encode()
        )
        parser = AmiParser()
        try:
            writer.write(banner)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for msg in parser.feed(data):
                    self.actions.append(msg)
                    if self.response_delay > 0:
                        await asyncio.sleep(self.response_delay)
                    if await self._dispatch(s, msg) is False:
                        await writer.drain()
                        return
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.sessions.discard(s)
            if s.replay_task is not None:
                s.replay_task.cancel()
            with contextlib.suppress(Exception):
                writer.close()

    async def _dispatch(self, s: Session, m: AmiMessage) -> bool | None:
        """Run one action; False closes the connection (Logoff, failed Login)."""
        name = m.get("Action", "") or ""
        aid = m.action_id
        if not name.strip():
            self._send(s, error(aid, "Missing action in request"))
            return None
        key = name.strip().lower()
        if not s.authenticated and key not in ("login", "logoff", "challenge"):
            self._send(s, error(aid, "Permission denied"))
            return None
        handler = self._handlers.get(key)
        if handler is None:
            self._send(
                s,
                error(
                    aid,
                    f"Invalid/unknown command: {name}. "
                    "Use Action: ListCommands to show available commands.",
                ),
            )
            return None
        return await handler(s, m)

    # -- session actions -------------------------------------------------------------------

    async def _a_login(self, s: Session, m: AmiMessage) -> bool | None:
        aid = m.action_id
        if s.authenticated:
            self._send(s, response(aid, "Already authenticated"))
            return None
        if m.get("Username") != self.username or m.get("Secret") != self.secret:
            await asyncio.sleep(0.05)  # Asterisk sleeps 1 s here to slow down guessing
            self._send(s, error(aid, "Authentication failed"))
            return False
        s.authenticated = True
        s.username = self.username
        s.event_mask = event_mask(m.get("Events"))
        self.logins += 1
        async with self._login_cond:
            self._login_cond.notify_all()
        if self.replay is not None:
            s.send(self.replay.login_for(aid))
            s.replaying = True
            s.replay_task = asyncio.get_running_loop().create_task(self._stream_replay(s))
            return None
        self._send(s, response(aid, "Authentication accepted"))
        if s.event_mask is None or "system" in s.event_mask:
            up = int(self.now() - self.state.started)
            self._send(
                s,
                event(
                    "FullyBooted",
                    "system,all",
                    [("Uptime", str(up)), ("LastReload", str(up)), ("Status", "Fully Booted")],
                ),
            )
        return None

    async def _a_logoff(self, s: Session, m: AmiMessage) -> bool:
        self._send(s, response(m.action_id, "Thanks for all the fish.", status="Goodbye"))
        return False

    async def _a_ping(self, s: Session, m: AmiMessage) -> None:
        if not self.ping_enabled:
            return
        self._send(
            s,
            response(
                m.action_id, None, extra=[("Ping", "Pong"), ("Timestamp", f"{self.now():.6f}")]
            ),
        )

    async def _a_events(self, s: Session, m: AmiMessage) -> None:
        s.event_mask = event_mask(m.get("EventMask", "on"))
        on = s.event_mask is None or bool(s.event_mask)
        self._send(s, response(m.action_id, None, extra=[("Events", "On" if on else "Off")]))

    async def _a_filter(self, s: Session, m: AmiMessage) -> None:
        if (m.get("Operation") or "").lower() != "add":
            self._send(s, error(m.action_id, "Unknown operation"))
            return
        raw = m.get("Filter") or ""
        exclude = raw.startswith("!")
        try:
            pattern = re.compile(raw[1:] if exclude else raw)
        except re.error:
            self._send(
                s,
                error(
                    m.action_id, "Filter did not compile.  Check the syntax of the filter given."
                ),
            )
            return
        (s.exclude if exclude else s.include).append(pattern)
        self._send(s, response(m.action_id, "Success"))

    async def _stream_replay(self, s: Session) -> None:
        """Send the recorded body in chunks; live responses go in at message boundaries."""
        assert self.replay is not None
        data = self.replay.data
        pos = len(self.replay.banner) + len(self.replay.login)
        sizes = self.chunking.sizes()
        writer = s.writer
        try:
            while pos < len(data) and not s.closing:
                if s.pending:
                    end = next_boundary(data, pos)
                    writer.write(data[pos:end] + b"".join(s.pending))
                    s.pending.clear()
                else:
                    end = min(len(data), pos + next(sizes))
                    writer.write(data[pos:end])
                pos = end
                await writer.drain()
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
            s.replaying = False
            if s.pending and not s.closing:
                writer.write(b"".join(s.pending))
                s.pending.clear()
            if self.close_after_replay and not s.closing:
                await writer.drain()
                writer.close()
        except ConnectionError:
            pass
        finally:
            s.replaying = False
            s.replay_done.set()
