"""The websocket hub (``GET /ws``): authentication, per-user event streams and fan-out.

Imperative shell around the pure parts: the bus hands every domain event to :meth:`Hub.handle`,
:class:`~screenpop.state.LiveState` says what changed, :mod:`screenpop.audience` who may see
it, :class:`~screenpop.frames.Frames` what they get; each user's frames are numbered and kept
by :class:`~screenpop.seqbuffer.SeqStream` and queued to every socket of that user.

Nothing on the event path waits for a socket: each socket has a bounded send queue drained by
its own writer task, and a client that falls behind is closed with 4409 (it resumes with its
last seq). The customer summary of a pop is read once per call (the first agent rung; the
others of a ring-all queue reuse it) on the routing's fast reader: in place on a SQLite file
(a few indexed statements cost less than a loop turn), awaited on PostgreSQL, and then later
events of that call wait behind it so nobody sees an answer before the pop, while events of
other calls go on. See docs/websocket.md for the protocol.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import WSMsgType, web
from sqlalchemy import case, func, select

from crm.auth import AuthError, authenticate
from crm.auth import _token_hash as token_hash
from crm.db import Database
from crm.models import Activity, ApiToken, User, utcnow
from crm.permissions import Principal
from crm.phones import lookup_keys
from cti import domain_events as de
from cti.directory import user_id_of
from cti.routing.context import AsyncReader, make_reader
from screenpop import audience
from screenpop.audience import CallFacts, Viewer
from screenpop.directory import Directory, load_directory
from screenpop.frames import Frames
from screenpop.presence import Presence, UserPush, UsersOnline
from screenpop.seqbuffer import BufferLimits, SeqStream
from screenpop.state import (
    AgentChanged,
    CallChanged,
    CallFinished,
    DayFigures,
    LinkChanged,
    LiveState,
    Note,
    PopClosed,
    PopOpened,
    PopUpdated,
    QueueChanged,
    QueueView,
    local_day,
)
from screenpop.summary import (
    FAILED,
    Masks,
    Summary,
    forced_records,
    read_activity_id,
    read_summary,
)
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.screenpop")

CLOSE_BAD_HELLO = 4400
CLOSE_AUTH = 4401
CLOSE_DEACTIVATED = 4403
CLOSE_NO_HELLO = 4408
CLOSE_BEHIND = 4409
CLOSE_SHUTDOWN = 1001

# Bytes in a socket's write buffer beyond which the peer counts as not reading (the kernel's
# own send buffer is full by then: asyncio buffers only what the kernel would not take).
BACKED_UP_BYTES = 64 * 1024
# Events the hub handles in a row before it lets the socket writers run.
BURST = 32

ALL_TYPES = ("contact", "lead", "account")


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class HubSettings:
    hello_timeout: float = 5.0
    send_queue: int = 256
    replay_events: int = 500
    replay_bytes: int = 512 * 1024
    replay_seconds: float = 600.0
    revalidate_seconds: float = 10.0
    heartbeat_seconds: float = 30.0
    lookup_timeout: float = 2.0
    close_timeout: float = 5.0
    activity_wait: float = 1.0  # how long call.ended waits for the call log's row
    # queue.stats of a queue at most this often (the machine reports every change)
    queue_stats_interval: float = 0.25
    # call.live / call.gone of a call at most this often
    call_live_interval: float = 0.1

    @classmethod
    def of(cls, ws: Any) -> HubSettings:
        if ws is None:
            return cls()
        return cls(**{k: getattr(ws, k) for k in cls.__dataclass_fields__ if hasattr(ws, k)})


@dataclass(frozen=True)
class Hello:
    token: str | None
    last_seq: int | None
    epoch: str | None


def parse_hello(text: str | bytes) -> Hello | str:
    """The first client frame, or the reason it is malformed."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return "not JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("type") != "hello":
        return 'the first frame must be {"type": "hello", ...}'
    token, last_seq, epoch = data.get("token"), data.get("last_seq"), data.get("epoch")
    if token is not None and not isinstance(token, str):
        return "token must be a string"
    if last_seq is not None and (
        isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0
    ):
        return "last_seq must be a non-negative integer or null"
    if epoch is not None and not isinstance(epoch, str):
        return "epoch must be a string or null"
    return Hello(token or None, last_seq, epoch)


# --- connections ------------------------------------------------------------------------------


class Client:
    """One websocket: a bounded queue of frames and the task that writes them."""

    __slots__ = (
        "closed",
        "hub",
        "queue",
        "session",
        "task",
        "token_hash",
        "transport",
        "wake",
        "ws",
    )

    def __init__(
        self,
        hub: Hub,
        ws: web.WebSocketResponse,
        session: UserSession,
        token: str,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.session = session
        self.token_hash = token_hash(token)  # what revalidation looks up (tokens are hashed)
        self.queue: deque[str] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._write(), name="ws-writer")
        self.wake.set()

    def push(self, text: str) -> None:
        """Queue one frame; never waits. A client that fell behind is dropped (4409): more
        than ``send_queue`` frames waiting while its socket takes nothing (the peer does not
        read), or more than the hard bound whatever the socket does. A burst of events to a
        client that reads fine stays under the hard bound."""
        if self.closed:
            return
        queue = self.queue
        queue.append(text)
        waiting = len(queue)
        limit = self.hub.settings.send_queue
        if waiting > limit and (waiting > self.hub.hard_queue or self._backed_up()):
            self.hub.dropped += 1
            self.close(CLOSE_BEHIND, "client fell behind; reconnect with last_seq")
            return
        self.wake.set()

    def _backed_up(self) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return True
        size: int = transport.get_write_buffer_size()  # type: ignore[attr-defined]
        return size >= BACKED_UP_BYTES

    async def _write(self) -> None:
        queue, ws = self.queue, self.ws
        try:
            while not self.closed:
                await self.wake.wait()
                self.wake.clear()
                while queue and not self.closed:
                    await ws.send_str(queue.popleft())
        except (ConnectionError, RuntimeError):
            self.closed = True  # the socket went away under us; the handler cleans up

    def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` (from the event path: the work is done by a task)."""
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        if self.task is not None:
            self.task.cancel()
        self.hub.spawn(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self.hub.settings.close_timeout):
                await self.ws.close(code=code, message=reason.encode())
        except TimeoutError:
            # A client that does not take the close frame is cut off.
            if self.transport is not None:
                self.transport.abort()  # type: ignore[attr-defined]
        except (ConnectionError, RuntimeError):
            pass


class UserSession:
    """Everything of one user across their tabs: permissions, stream and sockets."""

    __slots__ = (
        "clients",
        "idle_since",
        "masks",
        "phones_masked",
        "principal",
        "stream",
        "viewer",
    )

    def __init__(self, principal: Principal, viewer: Viewer, stream: SeqStream) -> None:
        self.stream = stream
        self.clients: set[Client] = set()
        self.idle_since: float | None = None
        self.set_principal(principal, viewer)

    def set_principal(self, principal: Principal, viewer: Viewer) -> None:
        self.principal = principal
        self.viewer = viewer
        self.masks = Masks.of(principal)
        # Whether the user sees customers' numbers masked (queue callers, wallboards).
        self.phones_masked = self.masks.number(ALL_TYPES)

    @property
    def user_id(self) -> int:
        return self.principal.user_id


class WatcherIndex:
    """Supervisors and admins by what they watch, so an event looks only at the few who
    may see it (the audience rules still decide): admins, the supervisors of a queue, the
    supervisors of a user's teams."""

    def __init__(self) -> None:
        self.admins: set[UserSession] = set()
        self.by_queue: dict[str, set[UserSession]] = {}
        self.by_member: dict[int, set[UserSession]] = {}
        self._keys: dict[UserSession, tuple[frozenset[str], frozenset[int]]] = {}

    def __len__(self) -> int:
        return len(self.admins) + len(self._keys)

    def __iter__(self) -> Iterator[UserSession]:
        yield from self.admins
        yield from self._keys

    def __contains__(self, session: object) -> bool:
        return session in self.admins or session in self._keys

    def discard(self, session: UserSession) -> None:
        self.admins.discard(session)
        keys = self._keys.pop(session, None)
        if keys is None:
            return
        for q in keys[0]:
            self.by_queue[q].discard(session)
        for uid in keys[1]:
            self.by_member[uid].discard(session)

    def add(self, session: UserSession) -> None:
        self.discard(session)
        v = session.viewer
        if v.is_admin:
            self.admins.add(session)
        elif v.watches:
            self._keys[session] = (v.queues, v.teammate_ids)
            for q in v.queues:
                self.by_queue.setdefault(q, set()).add(session)
            for uid in v.teammate_ids:
                self.by_member.setdefault(uid, set()).add(session)

    def _members(self, agents: Iterable[str], out: set[UserSession]) -> None:
        for agent in agents:
            uid = user_id_of(agent)
            if uid is not None:
                out |= self.by_member.get(uid, set())

    def of_agent(self, agent: str, queues: Iterable[str]) -> set[UserSession]:
        out = set(self.admins)
        self._members((agent,), out)
        for q in queues:
            out |= self.by_queue.get(q, set())
        return out

    def of_queue(self, queue: str) -> set[UserSession]:
        return self.admins | self.by_queue.get(queue, set())

    def of_call(self, *facts: CallFacts) -> set[UserSession]:
        out = set(self.admins)
        for f in facts:
            if f.queue is not None:
                out |= self.by_queue.get(f.queue, set())
            self._members(f.involved, out)
        return out


# --- the hub ----------------------------------------------------------------------------------


class Hub:
    def __init__(
        self,
        db: Database,
        *,
        region: str = "IR",
        timezone: str = "UTC",
        settings: HubSettings | None = None,
        service_level_seconds: float = 20.0,
        reader: AsyncReader | None = None,
    ) -> None:
        self.db = db
        self.region = region
        self.tz = ZoneInfo(timezone)
        self.settings = settings or HubSettings()
        self.sl_seconds = service_level_seconds
        self.epoch = f"{secrets.token_hex(6)}-{int(time.time())}"
        self.limits = BufferLimits(
            self.settings.replay_events, self.settings.replay_bytes, self.settings.replay_seconds
        )
        self.state = LiveState(self.tz)
        self.directory = Directory()
        self.frames = Frames(self.directory, region, self.state.agents)
        self.reader = reader or make_reader(db)
        self.sessions: dict[int, UserSession] = {}
        self.watchers = WatcherIndex()
        self.last_seq: dict[int, int] = {}  # survives an expired session: seq never goes back
        self._pending: dict[tuple[str, str], deque[Any]] = {}
        self._summaries: dict[tuple[str, str], Summary] = {}
        self._activities: dict[tuple[str, str], int | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.closing = False
        self.dropped = 0  # clients closed with 4409
        self.hard_queue = max(16 * self.settings.send_queue, 4096)
        # Seconds from the ring event's arrival (the machine's clock) to its pop being queued.
        self.pop_delays: deque[float] = deque(maxlen=10_000)
        self._burst = 0
        self._popped = False
        self._auth_slots = asyncio.Semaphore(4)
        self._dirty_queues: dict[str, QueueView] = {}
        self._queue_flush: asyncio.TimerHandle | None = None
        self._dirty_calls: dict[tuple[str, str], CallChanged] = {}
        self._call_flush: asyncio.TimerHandle | None = None
        self.lookups = 0
        # Seconds from ringing to the pop sent, per pop (tamas/metrics.py: pop latency).
        self.pop_observers: list[Callable[[float], None]] = []
        # Several instances: where users are connected, for their own events (presence.py).
        self.presence: Presence | None = None

    def join_cluster(self, instance: str, publish: Callable[[Any], None]) -> None:
        """Announce this instance's users on the bus and deliver others' ``ws.push``."""
        self.presence = Presence(instance, publish, self._connected_users)

    def _connected_users(self) -> list[int]:
        return [uid for uid, session in self.sessions.items() if session.clients]

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.refresh_directory()
        try:
            await self.seed_today(time.time())
        except Exception:
            log.exception("could not read today's queue figures from the call log")
        self._loop_task = asyncio.get_running_loop().create_task(
            self._maintain(), name="ws-maintenance"
        )
        if self.presence is not None:
            self.presence.start()

    async def stop(self) -> None:
        await self.shutdown()
        for handle in (self._queue_flush, self._call_flush):
            if handle is not None:
                handle.cancel()
        if self.presence is not None:
            await self.presence.leave()
        await cancel_and_wait([self._loop_task, *self._tasks])
        await self.reader.close()

    async def shutdown(self, app: web.Application | None = None) -> None:
        """Close every socket with 1001 (aiohttp ``on_shutdown``)."""
        if self.presence is not None and not self.closing:
            await self.presence.leave()
        self.closing = True
        clients = [c for s in self.sessions.values() for c in s.clients]
        for client in clients:
            client.close(CLOSE_SHUTDOWN, "gateway shutting down")
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.close_timeout + 1)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def refresh_directory(self) -> None:
        async with self.db.session() as s:
            directory = await load_directory(s)
        self.directory = directory
        self.frames.directory = directory

    async def seed_today(self, now: float) -> None:
        """Today's queue figures from the call log, so a restart does not zero the wallboard."""
        day = local_day(now, self.tz)
        midnight = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), self.tz)
        answered = Activity.answered_at.is_not(None)
        abandoned = (Activity.answered_at.is_(None)) & (Activity.disposition == "abandoned")
        within = answered & (Activity.wait_s <= self.sl_seconds)
        talked = answered & Activity.talk_s.is_not(None)
        stmt = (
            select(
                Activity.queue,
                func.count(),
                func.sum(case((answered, 1), else_=0)),
                func.sum(case((abandoned, 1), else_=0)),
                func.sum(case((talked, 1), else_=0)),
                func.sum(case((within, 1), else_=0)),
                func.sum(case((answered, Activity.wait_s), else_=0)),
                func.sum(case((talked, Activity.talk_s), else_=0)),
            )
            .where(
                Activity.kind == "call",
                Activity.queue.is_not(None),
                Activity.started_at >= midnight.astimezone(dt.UTC),
                Activity.deleted_at.is_(None),
            )
            .group_by(Activity.queue)
        )
        async with self.db.session() as s:
            rows = (await s.execute(stmt)).all()
        for queue, offered, ans, aban, completed, sl, wait, talk in rows:
            self.state.seed_day(
                queue,
                DayFigures(
                    day,
                    int(offered or 0),
                    int(ans or 0),
                    int(aban or 0),
                    int(completed or 0),
                    int(sl or 0),
                    float(wait or 0),
                    float(talk or 0),
                ),
            )

    # -- events ---------------------------------------------------------------------------
    async def handle(self, envelope: Any) -> None:
        """The bus subscriber: never waits for a socket or a database (in a burst of events
        it only yields now and then, so the socket writers keep up)."""
        if isinstance(envelope, UsersOnline | UserPush):
            self._from_instance(envelope)
            return
        self.dispatch(envelope)
        self._burst += 1
        if self._burst >= BURST or self._popped:
            # A pop was queued: let its socket writer run before the rest of a burst.
            self._burst = 0
            self._popped = False
            await asyncio.sleep(0)

    def dispatch(self, envelope: Any) -> None:
        key = _call_key(envelope)
        if key is None:
            try:
                self._apply(envelope, None)
            except Exception:
                log.exception("screen-pop hub failed on an event", extra={"type": envelope.type})
            return
        backlog = self._pending.get(key)
        if backlog is not None:
            backlog.append(envelope)
            return
        self._run(key, deque((envelope,)))

    def _run(self, key: tuple[str, str], backlog: deque[Any]) -> None:
        """Apply a call's events in order; one that needs a read first parks the rest."""
        while backlog:
            envelope = backlog[0]
            step = self._step_for(key, envelope)
            if step is not None:
                self._pending[key] = backlog
                self.spawn(self._after(step, key, backlog))
                return
            backlog.popleft()
            try:
                self._apply(envelope, key)
            except Exception:
                log.exception("screen-pop hub failed on an event", extra={"type": envelope.type})
        self._pending.pop(key, None)

    async def _after(
        self, step: Callable[[], Awaitable[None]], key: tuple[str, str], backlog: deque[Any]
    ) -> None:
        try:
            await step()
        except Exception:
            log.exception("screen-pop lookup failed", extra={"call_id": key[1]})
        self._run(key, backlog)

    def _step_for(
        self, key: tuple[str, str], envelope: Any
    ) -> Callable[[], Awaitable[None]] | None:
        """What must be read before the event can be shown: done here and now when the
        reader can (a SQLite file: a few indexed statements, cheaper than a loop turn),
        else returned as a step to await while the call's later events wait."""
        ev = envelope.event
        if isinstance(ev, de.CallRinging) and key not in self._summaries:
            fn = self._summary_reader(key, ev)
            if fn is None:
                self._summaries[key] = Summary()
                return None
            self.lookups += 1
            self._summaries[key] = FAILED  # whatever happens below, the ring goes on
            done, summary = self._read_now(fn)
            if done:
                if summary is not None:
                    self._summaries[key] = summary
                return None
            return lambda: self._lookup(key, fn)
        if isinstance(ev, de.CallEnded) and key not in self._activities:
            self._activities[key] = None
            call = self.state.calls.get(key)
            if not (ev.agents_talked or (call is not None and call.pops)):
                return None
            done, found = self._read_now(lambda fetch: read_activity_id(fetch, *key))
            if done and found is not None:
                self._activities[key] = found
                return None
            return lambda: self._activity(key)
        return None

    def _read_now(self, fn: Callable[[Any], Any]) -> tuple[bool, Any]:
        """(True, result) when read without awaiting, (False, None) when it must be
        awaited; a failing read is logged and gives (True, None)."""
        read_now = getattr(self.reader, "read_now", None)
        if read_now is None:
            return False, None
        try:
            return True, read_now(fn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False, None
            log.exception("screen-pop read failed")
        except Exception:
            log.exception("screen-pop read failed")
        return True, None

    def _summary_reader(
        self, key: tuple[str, str], ev: de.CallRinging
    ) -> Callable[[Any], Summary] | None:
        """The read of a call's customer summary: the record its variables name, else its
        number's matches (None: nothing to look up, a withheld number)."""
        call = self.state.calls.get(key)
        variables = dict(call.variables) if call is not None else {}
        variables.update(ev.variables)
        forced = forced_records(variables)
        number = ev.external_number or (call.number_e164 if call else None)
        raw = ev.external_number_raw or (call.number_raw if call else None)
        if number and number.startswith("+"):
            keys = [number]
        else:
            keys = lookup_keys(raw or number or "", self.region) if (raw or number) else []
        if not keys and not forced:
            return None
        return lambda fetch: read_summary(fetch, keys, forced, key)

    async def _lookup(self, key: tuple[str, str], fn: Callable[[Any], Summary]) -> None:
        """The customer summary of a call, read once (the first ring) and kept for it."""
        try:
            async with asyncio.timeout(self.settings.lookup_timeout):
                self._summaries[key] = await self.reader.read(fn)
        except TimeoutError:
            log.warning("customer lookup timed out", extra={"call_id": key[1]})

    async def _activity(self, key: tuple[str, str]) -> None:
        """The call activity the call log wrote, for the wrap-up form (waits a little for
        a call log that lags behind)."""
        deadline = time.monotonic() + self.settings.activity_wait
        pause = 0.1
        while True:
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause *= 2
            found = await self.reader.read(lambda fetch: read_activity_id(fetch, *key))
            if found is not None or time.monotonic() >= deadline or self.closing:
                self._activities[key] = found
                return

    def _apply(self, envelope: Any, key: tuple[str, str] | None) -> None:
        notes = self.state.apply(envelope)
        if key is not None:
            call = self.state.calls.get(key)
            summary = self._summaries.get(key)
            if call is not None and summary is not None:
                call.summary = summary
            for note in notes:
                if isinstance(note, (CallFinished, PopClosed)) and note.call.summary is None:
                    note.call.summary = summary
        for note in notes:
            self._emit(note)
        if key is not None and isinstance(envelope.event, de.CallEnded):
            self._summaries.pop(key, None)
            self._activities.pop(key, None)
        if len(self._summaries) > 20_000:  # calls that vanished without an end
            for stale in [k for k in self._summaries if k not in self.state.calls][:10_000]:
                del self._summaries[stale]

    # -- fan-out --------------------------------------------------------------------------
    def _session_of(self, agent: str) -> UserSession | None:
        uid = user_id_of(agent)
        return self.sessions.get(uid) if uid is not None else None

    def _send(self, session: UserSession, body: str, now: float) -> None:
        """Number ``body`` (a JSON object) for the user, keep it, queue it to every socket."""
        text = f'{{"seq":{session.stream.next_seq()},{body[1:]}'
        session.stream.append(text, now)
        for client in session.clients:
            client.push(text)

    def push_to_user(self, user_id: int, frame: Mapping[str, Any]) -> bool:
        """Send one user an event of their own (``reminder``, ``dialer.*``): numbered and
        kept for replay like every event, to each of their open tabs, on this instance or
        (several instances) on the one their socket is on. False (and nothing sent) when
        the user has no socket open anywhere, so the caller can try again later."""
        if self.closing:
            return False
        sent = False
        session = self.sessions.get(user_id)
        if session is not None and session.clients:
            self._send(session, dumps(dict(frame)), time.time())
            sent = True
        others = self.presence.elsewhere(user_id) if self.presence is not None else ()
        if others and self.presence is not None:  # tabs open on other instances too
            self.presence.forward(user_id, dict(frame), others)
            sent = True
        return sent

    def _from_instance(self, event: UsersOnline | UserPush) -> None:
        """Another instance's announcement, or an event it forwards for a user here."""
        presence = self.presence
        if presence is None or event.origin is None:
            return  # not clustered, or our own
        if isinstance(event, UsersOnline):
            presence.heard(event)
            return
        if not presence.for_me(event):
            return
        session = self.sessions.get(event.user_id)
        if session is None or self.closing:
            # Gone since the announcement: the sender counted it as sent (a reminder shows
            # in the user's list of reminders all the same).
            presence.undeliverable += 1
            log.warning("user event for a user not connected here", extra={"user": event.user_id})
            return
        presence.received += 1
        self._send(session, dumps(event.frame), time.time())  # replayed on reconnect

    def _emit(self, note: Note) -> None:
        now = time.time()
        frames = self.frames
        if isinstance(note, PopOpened):
            session = self._session_of(note.pop.agent)
            if session is not None:
                self._popped = True
                self.pop_delays.append(now - note.pop.opened_at)
                self._send(session, dumps(frames.pop(note.call, note.pop, session.principal)), now)
                for observe in self.pop_observers:
                    observe(now - note.pop.opened_at)
        elif isinstance(note, PopUpdated):
            session = self._session_of(note.agent)
            if session is not None:
                frame = frames.pop_update(
                    note.call, note.state, note.answered_by, dict(note.changes), session.principal
                )
                self._send(session, dumps(frame), now)
        elif isinstance(note, PopClosed):
            session = self._session_of(note.agent)
            if session is not None:
                activity = self._activities.get(note.call.key) if note.reason == "ended" else None
                frame = frames.pop_close(note.call, note.reason, note.answered_by, activity)
                self._send(session, dumps(frame), now)
        elif isinstance(note, CallFinished):
            activity = self._activities.get(note.call.key)
            for agent in dict.fromkeys(note.event.agents_talked):
                session = self._session_of(agent)
                if session is not None:
                    frame = frames.call_ended(note.call, note.event, activity, session.principal)
                    self._send(session, dumps(frame), now)
        elif isinstance(note, CallChanged):
            interval = self.settings.call_live_interval
            if interval <= 0:
                self._emit_call(note, now)
                return
            # Coalesced per call: a call changes several times in a second (ring, answer,
            # queue left...); the live lists get its latest picture a moment later, and who
            # may see it is decided between the first "before" and the last "after".
            key = note.call.key
            first = self._dirty_calls.get(key)
            if first is not None:
                note = CallChanged(note.call, first.before, note.gone)
            self._dirty_calls[key] = note
            if self._call_flush is None:
                loop = asyncio.get_running_loop()
                self._call_flush = loop.call_later(interval, self._flush_calls)
        elif isinstance(note, AgentChanged):
            view = note.agent
            body: str | None = None
            targets: list[UserSession] = [
                s
                for s in self.watchers.of_agent(view.agent, view.queues)
                if audience.sees_agent(s.viewer, view.agent, view.queues)
            ]
            own = self._session_of(view.agent)
            if own is not None and own not in targets:
                targets.append(own)
            for session in targets:
                body = body or dumps(frames.agent_state(view))
                self._send(session, body, now)
        elif isinstance(note, QueueChanged):
            interval = self.settings.queue_stats_interval
            if interval <= 0:
                self._emit_queue(note.queue, now)
                return
            # Coalesced: a busy queue changes several times per call; a wallboard needs
            # the latest figures, a few times a second, not every step.
            self._dirty_queues[note.queue.name] = note.queue
            if self._queue_flush is None:
                loop = asyncio.get_running_loop()
                self._queue_flush = loop.call_later(interval, self._flush_queues)
        elif isinstance(note, LinkChanged):
            body = dumps(frames.link(note.pbx, note.state))
            for session in self.sessions.values():
                self._send(session, body, now)

    def _flush_calls(self) -> None:
        self._call_flush = None
        dirty, self._dirty_calls = self._dirty_calls, {}
        now = time.time()
        for note in dirty.values():
            self._emit_call(note, now)

    def _flush_queues(self) -> None:
        self._queue_flush = None
        dirty, self._dirty_queues = self._dirty_queues, {}
        now = time.time()
        for view in dirty.values():
            self._emit_queue(view, now)

    def _emit_queue(self, view: QueueView, now: float) -> None:
        bodies: dict[bool, str] = {}
        for session in self.watchers.of_queue(view.name):
            if audience.sees_queue(session.viewer, view.name):
                masked = session.phones_masked
                if masked not in bodies:
                    bodies[masked] = dumps(self.frames.queue(view, masked))
                self._send(session, bodies[masked], now)

    def _emit_call(self, note: CallChanged, now: float) -> None:
        call = note.call
        after = CallFacts(None, frozenset(), frozenset()) if note.gone else call.facts()
        candidates = {s.user_id: s for s in self.watchers.of_call(note.before, after)}
        for agent in note.before.active | after.active:
            session = self._session_of(agent)
            if session is not None:
                candidates[session.user_id] = session
        if not candidates:
            return
        gone: str | None = None
        live: dict[tuple[bool, bool], str] = {}
        for session in candidates.values():
            v = session.viewer
            if not note.gone and audience.sees_call(v, after):
                sig = self.frames.call_signature(call, session.masks)
                if sig not in live:
                    live[sig] = dumps(self.frames.call(call, session.masks))
                self._send(session, live[sig], now)
            elif audience.sees_call(v, note.before):
                gone = gone or dumps(self.frames.call_gone(call))
                self._send(session, gone, now)

    # -- snapshot ---------------------------------------------------------------------------
    def snapshot(self, session: UserSession, now: float) -> dict[str, Any]:
        p, v = session.principal, session.viewer
        frames, state = self.frames, self.state
        calls = [
            frames.call(c, session.masks)
            for c in state.calls.values()
            if audience.sees_call(v, c.facts())
        ]
        pops = [frames.pop(c, pop, p) for c, pop in state.pops_of(v.agent)]
        if v.watches:
            agents = [
                frames.agent_state(a)
                for a in state.agents.values()
                if audience.sees_agent(v, a.agent, a.queues)
            ]
        else:
            own = state.agents.get(v.agent)
            agents = [frames.agent_state(own)] if own is not None else []
        masked = session.phones_masked
        queues = [
            frames.queue(q, masked)
            for q in state.queues.values()
            if v.watches and audience.sees_queue(v, q.name)
        ]
        return {
            "type": "snapshot",
            "seq": session.stream.seq,
            "at": now,
            "calls": Frames.without_type(calls),
            "pops": Frames.without_type(pops),
            "agents": Frames.without_type(agents),
            "queues": Frames.without_type(queues),
            "links": [{"pbx": pbx, "state": st} for pbx, st in sorted(state.links.items())],
        }

    # -- connections ------------------------------------------------------------------------
    def _session(self, p: Principal) -> UserSession:
        session = self.sessions.get(p.user_id)
        viewer = self.directory.viewer(p)
        if session is None:
            stream = SeqStream(self.limits, self.last_seq.get(p.user_id, 0))
            session = self.sessions[p.user_id] = UserSession(p, viewer, stream)
        else:
            session.set_principal(p, viewer)
        self._index(session)
        return session

    def _index(self, session: UserSession) -> None:
        self.watchers.add(session)

    async def _authenticate(self, token: str) -> tuple[Principal, dict[str, Any]]:
        # A few at a time: after a restart every desk reconnects at once, and each check
        # may write (the token's last use); a storm of writers only fights over the lock.
        async with self._auth_slots, self.db.session() as s:
            p = await authenticate(s, token)
            user = await s.get(User, p.user_id)
            full_name = user.full_name if user is not None else ""
        info = {
            "id": p.user_id,
            "username": p.username,
            "full_name": full_name,
            "role": p.role,
            "language": p.language,
            "team_ids": sorted(p.team_ids),
        }
        return p, info

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws``: hello, welcome, replay or snapshot, then live events."""
        ws = web.WebSocketResponse(
            heartbeat=self.settings.heartbeat_seconds, max_msg_size=64 * 1024, compress=False
        )
        await ws.prepare(request)
        if self.closing:
            await ws.close(code=CLOSE_SHUTDOWN, message=b"gateway shutting down")
            return ws
        try:
            async with asyncio.timeout(self.settings.hello_timeout):
                msg = await ws.receive()
        except TimeoutError:
            timeout = f"{self.settings.hello_timeout:g}"
            await ws.close(code=CLOSE_NO_HELLO, message=f"no hello within {timeout} s".encode())
            return ws
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return ws
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            await ws.close(code=CLOSE_BAD_HELLO, message=b"malformed hello: not a text frame")
            return ws
        hello = parse_hello(msg.data)
        if isinstance(hello, str):
            await ws.close(code=CLOSE_BAD_HELLO, message=f"malformed hello: {hello}".encode())
            return ws
        token = hello.token or _header_token(request) or request.query.get("token", "")
        try:
            principal, user = await self._authenticate(token)
        except AuthError as exc:
            reason = str(exc)
            code = CLOSE_DEACTIVATED if "deactivated" in reason else CLOSE_AUTH
            await ws.close(code=code, message=reason.encode())
            return ws
        if self.closing:
            await ws.close(code=CLOSE_SHUTDOWN, message=b"gateway shutting down")
            return ws
        # From here to start() nothing awaits: no event can slip between what the client
        # is told (replay or snapshot at seq N) and the live events after N.
        now = time.time()
        session = self._session(principal)
        client = Client(self, ws, session, token, request.transport)
        replay: list[str] | None = None
        if hello.last_seq is not None and hello.epoch == self.epoch:
            replay = session.stream.since(hello.last_seq, now)
        welcome = {
            "type": "welcome",
            "epoch": self.epoch,
            "resumed": replay is not None,
            "user": user,
            "seq": session.stream.seq,
        }
        client.queue.append(dumps(welcome))
        if replay is None:
            client.queue.append(dumps(self.snapshot(session, now)))
        else:
            client.queue.extend(replay)
        session.clients.add(client)
        session.idle_since = None
        client.start()
        if self.presence is not None:
            self.presence.changed()
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._client_frame(client, msg.data)
        finally:
            client.closed = True
            if client.task is not None:
                client.task.cancel()
            session.clients.discard(client)
            if not session.clients:
                session.idle_since = time.time()
                if self.presence is not None:
                    self.presence.changed()
        return ws

    def _client_frame(self, client: Client, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("type") == "ping":
            client.push('{"type":"pong"}')

    # -- upkeep -------------------------------------------------------------------------------
    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.settings.revalidate_seconds)
            try:
                await self.revalidate()
            except Exception:
                log.exception("websocket revalidation failed")
            now = time.time()
            self.expire_sessions(now)
            for note in self.state.tick(now):
                self._emit(note)

    async def revalidate(self) -> None:
        """Close sockets whose token was revoked or expired or whose user was deactivated;
        take role and team changes into account."""
        await self.refresh_directory()
        directory = self.directory
        for i, (uid, session) in enumerate(list(self.sessions.items())):
            if i % 100 == 99:
                await asyncio.sleep(0)  # thousands of users: never hold the events up
            user = directory.users.get(uid)
            if user is None or not user.active:
                for client in list(session.clients):
                    client.close(CLOSE_DEACTIVATED, "this user is deactivated")
                self._forget(session)
                continue
            p = directory.principal(uid)
            if p is not None and p != session.principal:
                session.set_principal(p, directory.viewer(p))
                self._index(session)
        clients = [c for s in self.sessions.values() for c in s.clients if not c.closed]
        if not clients:
            return
        by_hash: dict[str, list[Client]] = {}
        for client in clients:
            by_hash.setdefault(client.token_hash, []).append(client)
        found: dict[str, tuple[Any, Any]] = {}
        hashes = sorted(by_hash)
        async with self.db.session() as s:
            for i in range(0, len(hashes), 200):
                chunk = hashes[i : i + 200]
                stmt = select(ApiToken.token_hash, ApiToken.revoked_at, ApiToken.expires_at).where(
                    ApiToken.token_hash.in_(chunk)
                )
                for h, revoked, expires in await s.execute(stmt):
                    found[h] = (revoked, expires)
        now = utcnow()
        for h, owners in by_hash.items():
            reason = None
            if h not in found:
                reason = "unknown token"
            elif found[h][0] is not None:
                reason = "token revoked"
            elif found[h][1] <= now:
                reason = "token expired"
            if reason is not None:
                for client in owners:
                    client.close(CLOSE_AUTH, reason)

    def _forget(self, session: UserSession) -> None:
        self.last_seq[session.user_id] = session.stream.seq
        self.sessions.pop(session.user_id, None)
        self.watchers.discard(session)

    def expire_sessions(self, now: float) -> None:
        """Users gone longer than the replay window: their buffers are of no use any more."""
        limit = self.settings.replay_seconds
        for session in list(self.sessions.values()):
            idle = session.idle_since
            if not session.clients and idle is not None and now - idle > limit:
                self._forget(session)

    # -- introspection ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        delays = sorted(self.pop_delays)

        def ms(q: float) -> float | None:
            return (
                round(delays[min(len(delays) - 1, int(q * len(delays)))] * 1000, 3)
                if delays
                else None
            )

        return {
            "pop_queued_ms_p50": ms(0.5),
            "pop_queued_ms_p99": ms(0.99),
            "sessions": len(self.sessions),
            "clients": sum(len(s.clients) for s in self.sessions.values()),
            "watchers": len(self.watchers),
            "calls": len(self.state.calls),
            "pending_calls": len(self._pending),
            "lookups": self.lookups,
            "dropped_clients": self.dropped,
            **(
                {
                    "user_events_forwarded": self.presence.forwarded,
                    "user_events_received": self.presence.received,
                    "user_events_undeliverable": self.presence.undeliverable,
                }
                if self.presence is not None
                else {}
            ),
        }


def _header_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def _call_key(envelope: Any) -> tuple[str, str] | None:
    ev = getattr(envelope, "event", None)
    call_id = getattr(ev, "call_id", None)
    if call_id is None or not isinstance(
        ev,
        (
            de.CallRinging,
            de.CallAnswered,
            de.CallTransferred,
            de.CallHeld,
            de.CallUnheld,
            de.CallUpdated,
            de.CallEnded,
            de.QueueCallerJoined,
        ),
    ):
        return None  # (a caller leaving a queue only changes the queue: never held back)
    return (envelope.pbx, call_id)


HUB = web.AppKey("screenpop_hub", Hub)
