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
from dataclasses import dataclass, field
from pathlib import Path

from cti.ami_message import AmiMessage
from cti.ami_protocol import AmiParser
from cti.simulator.calls import CallEngine, Request, SimCall
from cti.simulator.model import Channel, PbxConfig, PbxState, QueueMember
from cti.simulator.replay import Chunking, Trace, next_boundary
from cti.simulator.wire import Pairs, error, event, frame, list_complete, list_start, response

log = logging.getLogger("cti.simulator")

_EVENT_CLASSES = {
    "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
    "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security",
    "message",
}  # fmt: skip
_CALLERID = re.compile(r'^\s*(?:"?([^"<]*?)"?\s*)?<([^>]*)>\s*$')
PERSIAN_NAMES = ["علی رضایی", "زهرا کاظمی", "مریم حسینی", "Sara Ahmadi", "Reza Karimi", "Nima"]


def parse_callerid(value: str) -> tuple[str, str]:
    """``"Name" <num>`` / ``Name <num>`` / ``num`` -> (num, name); '<unknown>' when absent."""
    m = _CALLERID.match(value)
    if m:
        return (m.group(2) or "<unknown>", (m.group(1) or "").strip() or "<unknown>")
    value = value.strip()
    return (value or "<unknown>", "<unknown>")


def _event_mask(value: str | None) -> set[str] | None:
    """Login/Events ``on``/``off``/class list -> None (everything) or the allowed classes."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("on", "yes", "true", "1", "all", ""):
        return None
    if v in ("off", "no", "false", "0"):
        return set()
    return {c.strip() for c in v.split(",") if c.strip()}


@dataclass(eq=False)
class Session:
    """One client connection."""

    writer: asyncio.StreamWriter
    peer: str
    authenticated: bool = False
    username: str = ""
    event_mask: set[str] | None = None
    include: list[re.Pattern[str]] = field(default_factory=list)
    exclude: list[re.Pattern[str]] = field(default_factory=list)
    replaying: bool = False
    pending: list[bytes] = field(default_factory=list)
    replay_task: asyncio.Task[None] | None = None
    replay_done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def closing(self) -> bool:
        return self.writer.is_closing()

    def send(self, data: bytes) -> None:
        """Write now, or after the current replayed message if a replay is streaming."""
        if self.closing:
            return
        if self.replaying:
            self.pending.append(data)
        else:
            self.writer.write(data)

    def wants(self, pairs: Pairs) -> bool:
        if self.event_mask is not None:
            priv = pairs[1][1] if len(pairs) > 1 and pairs[1][0] == "Privilege" else ""
            if not set(priv.lower().split(",")) & self.event_mask:
                return False
        if self.include or self.exclude:
            text = "".join(f"{k}: {v}\r\n" for k, v in pairs)
            if self.include and not any(p.search(text) for p in self.include):
                return False
            if any(p.search(text) for p in self.exclude):
                return False
        return True


Handler = Callable[[Session, AmiMessage], Awaitable[bool | None]]


class SimulatedPbx:
    """A fake Asterisk for tests, benchmarks and demos. Always listens on loopback.

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
        s.event_mask = _event_mask(m.get("Events"))
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
        s.event_mask = _event_mask(m.get("EventMask", "on"))
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

    # -- calls -----------------------------------------------------------------------------

    async def _a_originate(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        channel = (m.get("Channel") or "").strip()
        if not channel:
            self._send(s, error(aid, "Channel not specified"))
            return
        exten, context = m.get("Exten") or "", m.get("Context") or ""
        if m.get("Application") is None and (not exten or not context or not m.get("Priority")):
            self._send(s, error(aid, "Originate with 'Exten' requires 'Context' and 'Priority'"))
            return
        variables: dict[str, str] = {}
        for item in m.getall("Variable"):
            for part in item.split(","):
                k, _, v = part.partition("=")
                if k:
                    variables[k.strip()] = v
        talk = float(variables.get("TALK", "6") or 6)
        timeout = float(m.get("Timeout") or 30000) / 1000.0
        cid = parse_callerid(m.get("CallerID") or "")
        async_ = (m.get("Async") or "").lower() in ("true", "yes", "1", "on")
        agent = self.state.agent_by_device(channel.removesuffix("/n"))
        call: SimCall | None = None
        if agent is not None and m.get("Application") is None:
            call = self.engine.click_to_call(
                agent.extension, exten, talk=talk, callerid=cid if cid[0] != "<unknown>" else None,
                context=context, variables=variables, action_id=aid if async_ else None,
                ring_timeout=timeout,
            )  # fmt: skip
        elif context == self.config.inbound_context and m.get("Application") is None:
            call = self.engine.inbound_call(
                cid[0], cid[1], exten, talk=talk, variables=variables,
                action_id=aid if async_ else None,
            )  # fmt: skip
        if async_:
            self._send(s, response(aid, "Originate successfully queued"))
            if call is None:
                self.engine.originate_failure(channel, context, exten, aid or "")
            return
        if call is None:
            self._send(s, error(aid, "Originate failed"))
            return
        # Synchronous originate: Asterisk answers once the first leg is up (or failed).
        waits = [
            asyncio.ensure_future(call.originated.wait()),
            asyncio.ensure_future(call.finished.wait()),
        ]
        await asyncio.wait(
            waits, timeout=(timeout + 1) * self.time_scale + 1, return_when="FIRST_COMPLETED"
        )
        for w in waits:
            w.cancel()
        if call.originated.is_set():
            self._send(s, response(aid, "Originate successfully queued"))
        else:
            self._send(s, error(aid, "Originate failed"))

    async def _a_hangup(self, s: Session, m: AmiMessage) -> None:
        name = m.get("Channel") or ""
        chan = self.state.channels.get(name)
        if chan is None:
            self._send(s, error(m.action_id, "No such channel"))
            return
        self._send(s, response(m.action_id, "Channel Hungup"))
        found = self.engine.find_call(name)
        if found is not None and not found[0].finished.is_set():
            self.engine.request(found[0], Request("hangup", name))
        else:  # a channel no script owns any more: just hang it up
            self.engine.chan_ev("HangupRequest", chan, [("Cause", "16")])
            self.engine.hangup_channel(chan, 16)

    async def _a_redirect(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        name = m.get("Channel") or ""
        for key, msg in (
            ("Channel", "Channel not specified"),
            ("Context", "Context not specified"),
            ("Exten", "Exten not specified"),
            ("Priority", "Priority not specified"),
        ):
            if not m.get(key):
                self._send(s, error(aid, msg))
                return
        found = self.engine.find_call(name)
        if name not in self.state.channels or found is None:
            self._send(s, error(aid, f"Channel does not exist: {name}"))
            return
        if found[0].phase not in ("queued", "ringing", "talking"):
            self._send(s, error(aid, "Redirect failed"))
            return
        self._send(s, response(aid, "Redirect successful"))
        self.engine.request(
            found[0], Request("redirect", name, m.get("Exten") or "", m.get("Context") or "")
        )

    async def _transfer(self, s: Session, m: AmiMessage, kind: str) -> None:
        aid = m.action_id
        name, exten = m.get("Channel") or "", m.get("Exten") or ""
        if not name:
            self._send(s, error(aid, "No channel specified"))
            return
        if not exten:
            self._send(s, error(aid, "No extension specified"))
            return
        found = self.engine.find_call(name)
        if name not in self.state.channels or found is None:
            self._send(s, error(aid, "Channel specified does not exist"))
            return
        if kind == "blind" and found[0].phase != "talking":
            self._send(s, error(aid, "Transfer invalid"))
            return
        ok = "Transfer succeeded" if kind == "blind" else "Atxfer successfully queued"
        self._send(s, response(aid, ok))
        if found[0].phase == "talking":
            self.engine.request(found[0], Request(kind, name, exten, m.get("Context") or ""))

    async def _a_blindtransfer(self, s: Session, m: AmiMessage) -> None:
        await self._transfer(s, m, "blind")

    async def _a_atxfer(self, s: Session, m: AmiMessage) -> None:
        await self._transfer(s, m, "atxfer")

    # -- queues ----------------------------------------------------------------------------

    async def _a_queueadd(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        qname, iface = m.get("Queue") or "", m.get("Interface") or ""
        if not qname:
            self._send(s, error(aid, "'Queue' not specified."))
            return
        if not iface:
            self._send(s, error(aid, "'Interface' not specified."))
            return
        queue = self.state.queues.get(qname)
        if queue is None:
            self._send(s, error(aid, "Unable to add interface to queue: No such queue"))
            return
        if iface in queue.members:
            self._send(s, error(aid, "Unable to add interface: Already there"))
            return
        paused = (m.get("Paused") or "").lower() in ("true", "yes", "1", "on")
        member = QueueMember(
            interface=iface,
            name=m.get("MemberName") or iface,
            state_interface=m.get("StateInterface") or iface.removesuffix("/n"),
            penalty=int(m.get("Penalty") or 0),
            dynamic=True,
            paused=paused,
            paused_reason=(m.get("Reason") or "") if paused else "",
            login_time=int(self.now()),
        )
        queue.members[iface] = member
        self.state.device_states.setdefault(member.state_interface, "NOT_INUSE")
        self._send(s, response(aid, "Added interface to queue"))
        self.broadcast(self.state.member_status_event(queue, member, "QueueMemberAdded"))

    async def _a_queueremove(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        qname, iface = m.get("Queue") or "", m.get("Interface") or ""
        if not qname or not iface:
            self._send(s, error(aid, "Need 'Queue' and 'Interface' parameters."))
            return
        queue = self.state.queues.get(qname)
        if queue is None:
            self._send(s, error(aid, "Unable to remove interface from queue: No such queue"))
            return
        member = queue.members.get(iface)
        if member is None:
            self._send(s, error(aid, "Unable to remove interface: Not there"))
            return
        if not member.dynamic:
            self._send(s, error(aid, "Member not dynamic"))
            return
        del queue.members[iface]
        self._send(s, response(aid, "Removed interface from queue"))
        self.broadcast(self.state.member_status_event(queue, member, "QueueMemberRemoved"))

    async def _a_queuepause(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        iface, paused_s = m.get("Interface") or "", m.get("Paused") or ""
        if not iface or not paused_s:
            self._send(s, error(aid, "Need 'Interface' and 'Paused' parameters."))
            return
        paused = paused_s.lower() in ("true", "yes", "1", "on", "y", "t")
        qname = m.get("Queue") or ""
        hits = [
            (q, q.members[iface])
            for q in self.state.queues.values()
            if (not qname or q.name == qname) and iface in q.members
        ]
        if not hits:
            self._send(s, error(aid, "Interface not found"))
            return
        self._send(
            s,
            response(
                aid,
                "Interface paused successfully" if paused else "Interface unpaused successfully",
            ),
        )
        for queue, member in hits:
            member.paused = paused
            member.paused_reason = (m.get("Reason") or "") if paused else ""
            if paused:
                member.last_pause = int(self.now())
            self.broadcast(self.state.member_status_event(queue, member, "QueueMemberPause"))

    async def _a_queuestatus(self, s: Session, m: AmiMessage) -> None:
        self._send(
            s, *self.state.queue_status(m.action_id, self.now(), m.get("Queue"), m.get("Member"))
        )

    async def _a_queuesummary(self, s: Session, m: AmiMessage) -> None:
        self._send(s, *self.state.queue_summary(m.action_id, self.now(), m.get("Queue")))

    # -- channel lists and state -----------------------------------------------------------

    async def _a_coreshowchannels(self, s: Session, m: AmiMessage) -> None:
        self._send(s, *self.state.core_show_channels(m.action_id, self.now()))

    async def _a_status(self, s: Session, m: AmiMessage) -> None:
        name = m.get("Channel") or None
        if name and name not in self.state.channels:
            self._send(s, error(m.action_id, "No such channel"))
            return
        self._send(s, *self.state.status(m.action_id, self.now(), name))

    async def _a_devicestatelist(self, s: Session, m: AmiMessage) -> None:
        self._send(s, *self.state.device_state_list(m.action_id))

    async def _a_extensionstatelist(self, s: Session, m: AmiMessage) -> None:
        if not self.config.agents:
            self._send(s, error(m.action_id, "No dialplan hints are available"))
            return
        self._send(s, *self.state.extension_state_list(m.action_id))

    async def _a_corestatus(self, s: Session, m: AmiMessage) -> None:
        start = time.localtime(self.state.started)
        self._send(
            s,
            response(
                m.action_id,
                None,
                extra=[
                    ("CoreStartupDate", time.strftime("%Y-%m-%d", start)),
                    ("CoreStartupTime", time.strftime("%H:%M:%S", start)),
                    ("CoreReloadDate", time.strftime("%Y-%m-%d", start)),
                    ("CoreReloadTime", time.strftime("%H:%M:%S", start)),
                    ("CoreCurrentCalls", str(self.state.active_calls())),
                    ("CoreProcessedCalls", str(self.state.processed_calls)),
                ],
            ),
        )

    async def _a_command(self, s: Session, m: AmiMessage) -> None:
        cmd = (m.get("Command") or "").strip()
        if not cmd:
            self._send(s, error(m.action_id, "No command provided"))
            return
        if cmd == "core show version":
            lines = [f"Asterisk {self.config.asterisk_version} (SIMULATED PBX)"]
        elif cmd == "core show channels concise":
            lines = [
                f"{c.name}!{c.context}!{c.exten}!{c.priority}!{c.state}!{c.application}!"
                f"{c.app_data}!{c.caller_num}!!!3!0!{c.bridge_id}!{c.uniqueid}"
                for c in self.state.channels.values()
            ]
        else:
            lines = [
                f"No such command '{cmd}' (type 'core show help {cmd}' for other possible commands)"
            ]
        self._send(
            s,
            response(
                m.action_id, "Command output follows", extra=[("Output", line) for line in lines]
            ),
        )

    # -- recording -------------------------------------------------------------------------

    def _channel_or_error(self, s: Session, m: AmiMessage) -> Channel | None:
        name = m.get("Channel") or ""
        if not name:
            self._send(s, error(m.action_id, "No channel specified"))
            return None
        chan = self.state.channels.get(name)
        if chan is None:
            self._send(s, error(m.action_id, "No such channel"))
        return chan

    async def _a_mixmonitor(self, s: Session, m: AmiMessage) -> None:
        chan = self._channel_or_error(s, m)
        if chan is None:
            return
        file = m.get("File") or f"{chan.uniqueid}.wav"
        path = file if file.startswith("/") else f"{self.config.spool}/{file}"
        self._send(s, response(m.action_id, None))
        self.engine.setvar(chan, "MIXMONITOR_FILENAME", path, always=True)
        self.engine.chan_ev("MixMonitorStart", chan)

    async def _a_stopmixmonitor(self, s: Session, m: AmiMessage) -> None:
        chan = self._channel_or_error(s, m)
        if chan is None:
            return
        if "MIXMONITOR_FILENAME" not in chan.variables:
            self._send(s, error(m.action_id, "Could not stop monitoring channel"))
            return
        self._send(s, response(m.action_id, None))
        self.engine.chan_ev("MixMonitorStop", chan)

    async def _a_mixmonitormute(self, s: Session, m: AmiMessage) -> None:
        chan = self._channel_or_error(s, m)
        if chan is None:
            return
        direction = (m.get("Direction") or "both").lower()
        if direction not in ("read", "write", "both"):
            self._send(
                s, error(m.action_id, "Invalid direction specified. Must be read, write or both")
            )
            return
        state = (m.get("State") or "1").lower() in ("1", "true", "yes", "on")
        self._send(s, response(m.action_id, None))
        self.engine.chan_ev(
            "MixMonitorMute", chan, [("Direction", direction), ("State", "1" if state else "0")]
        )

    # -- variables and AstDB ---------------------------------------------------------------

    async def _a_setvar(self, s: Session, m: AmiMessage) -> None:
        var = m.get("Variable") or ""
        if not var:
            self._send(s, error(m.action_id, "No variable specified"))
            return
        name = m.get("Channel") or ""
        if name:
            chan = self.state.channels.get(name)
            if chan is None:
                self._send(s, error(m.action_id, "No such channel"))
                return
            self._send(s, response(m.action_id, "Variable Set"))
            self.engine.setvar(chan, var, m.get("Value") or "", always=True)
            return
        self.state.globals[var] = m.get("Value") or ""
        self._send(s, response(m.action_id, "Variable Set"))

    async def _a_getvar(self, s: Session, m: AmiMessage) -> None:
        var = m.get("Variable") or ""
        if not var:
            self._send(s, error(m.action_id, "No variable specified"))
            return
        name = m.get("Channel") or ""
        value = ""
        if name:
            chan = self.state.channels.get(name)
            if chan is None:
                self._send(s, error(m.action_id, "No such channel"))
                return
            special = {
                "CALLERID(num)": chan.caller_num,
                "CALLERID(name)": chan.caller_name,
                "UNIQUEID": chan.uniqueid,
                "CHANNEL": chan.name,
                "CHANNEL(linkedid)": chan.linkedid,
                "CONNECTEDLINE(num)": chan.connected_num,
            }
            value = special.get(var, chan.variables.get(var.lstrip("_"), ""))
        else:
            value = self.state.globals.get(var, "")
        self._send(s, response(m.action_id, None, extra=[("Variable", var), ("Value", value)]))

    async def _a_dbput(self, s: Session, m: AmiMessage) -> None:
        family, key = m.get("Family") or "", m.get("Key") or ""
        if not family:
            self._send(s, error(m.action_id, "No family specified"))
        elif not key:
            self._send(s, error(m.action_id, "No key specified"))
        else:
            self.state.db[f"{family}/{key}"] = m.get("Val") or ""
            self._send(s, response(m.action_id, "Updated database successfully"))

    async def _a_dbget(self, s: Session, m: AmiMessage) -> None:
        family, key = m.get("Family") or "", m.get("Key") or ""
        if not family:
            self._send(s, error(m.action_id, "No family specified."))
            return
        if not key:
            self._send(s, error(m.action_id, "No key specified."))
            return
        val = self.state.db.get(f"{family}/{key}")
        if val is None:
            self._send(s, error(m.action_id, "Database entry not found"))
            return
        aid = m.action_id
        item: Pairs = [("Event", "DBGetResponse"), ("Family", family), ("Key", key), ("Val", val)]
        if aid:
            item.append(("ActionID", aid))
        self._send(
            s, list_start(aid, "Result will follow"), item, list_complete("DBGetComplete", aid, 1)
        )

    async def _a_dbdel(self, s: Session, m: AmiMessage) -> None:
        family, key = m.get("Family") or "", m.get("Key") or ""
        if not family:
            self._send(s, error(m.action_id, "No family specified."))
        elif not key:
            self._send(s, error(m.action_id, "No key specified."))
        elif self.state.db.pop(f"{family}/{key}", None) is None:
            self._send(s, error(m.action_id, "Database entry could not be deleted"))
        else:
            self._send(s, response(m.action_id, "Key deleted successfully"))
