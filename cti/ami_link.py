"""The AMI link: one supervised connection to one Asterisk PBX, built on panoramisk.

panoramisk supplies the shape (``Manager`` holding an ``AMIProtocol``, ``Action`` objects with
ActionIDs and futures); this module replaces the parts that are too weak for a telephony
gateway:

* bytes, not text: panoramisk decodes every TCP read on its own with ``'ignore'``, which
  mangles Persian caller names split across reads. :class:`_LinkProtocol` feeds the raw
  bytes to our incremental :class:`~cti.ami_protocol.AmiParser`; events go straight to
  ``on_event`` as :class:`AmiMessage` (parsed once: this path is benchmarked), responses
  and list items are matched to their ``Action`` by ActionID.
* reconnect with capped exponential backoff and jitter (reset after a successful login);
  a rejected login is logged and retried on the same backoff, never a crash loop.
* a heartbeat that checks replies: no answer to ``Ping`` within ``ping_timeout`` means the
  link is dead; the transport is aborted and the link reconnects.
* resync after every login: ``CoreShowChannels``, ``QueueStatus`` and ``DeviceStateList``
  (``ExtensionStateList`` if that is refused) are collected as complete lists and handed to
  ``on_resync`` as one :class:`ResyncSnapshot`.
* actions pending when the link drops fail with :class:`AmiNotConnected`; panoramisk would
  queue them and send them again after reconnecting, which could dial a call twice.

Event ordering (the contract callers rely on):

1. From connection until the resync is complete, events are buffered, not delivered.
2. When the lists are complete, ``on_resync(snapshot)`` runs first (awaited if it is a
   coroutine function), then the buffered events are delivered to ``on_event`` in arrival
   order, then the state becomes ``"up"`` and events flow live.
3. If the link drops before the resync completes, no snapshot is delivered; the buffered
   events are still delivered (in order) before the state becomes ``"down"``. Nothing that
   arrived is dropped; the next resync corrects whatever was missed while down.
4. A ``FullyBooted`` event while up (Asterisk finished booting after we logged in) is
   delivered, then a new resync starts with the same buffering rule. A ``Shutdown`` event is
   delivered, then the link closes and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager

from cti.ami_message import AmiMessage
from cti.ami_protocol import AmiParser, FieldValue, ParseProblem, encode_action
from tamas.config import AmiServer
from tamas.tasks import cancel_and_wait

__all__ = [
    "AmiActionError",
    "AmiError",
    "AmiEventList",
    "AmiLink",
    "AmiNotConnected",
    "AmiTimeout",
    "Backoff",
    "LinkCounters",
    "LinkState",
    "ResyncSnapshot",
]

log = logging.getLogger("tamas.ami")

LinkState = Literal["connecting", "connected", "resyncing", "up", "down"]
Fields = Mapping[str, FieldValue] | Iterable[tuple[str, FieldValue]]
EventCallback = Callable[[AmiMessage], object]
ResyncCallback = Callable[["ResyncSnapshot"], Awaitable[None] | None]
StateCallback = Callable[[str], object]

_LOGGED_IN: frozenset[str] = frozenset({"connected", "resyncing", "up"})
_CONTROL_EVENTS = frozenset({"Shutdown", "FullyBooted"})
_ERROR_RESPONSES = frozenset({"error", "fail", "failure"})
_MAX_ABANDONED = 1000
_PROBLEM_LOG_FIRST = 20
_PROBLEM_LOG_EVERY = 1000


# -- errors -------------------------------------------------------------------------------


class AmiError(Exception):
    """Base of every error raised by :class:`AmiLink` actions."""


class AmiNotConnected(AmiError, ConnectionError):
    """The link is not logged in (or dropped while waiting); raised at once, never hangs."""


class AmiTimeout(AmiError, TimeoutError):
    """The PBX did not answer an action in time."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error``; ``str(exc)`` is Asterisk's ``Message`` text."""

    def __init__(self, response: AmiMessage, *, action: str = "", pbx: str = "") -> None:
        self.response = response
        self.message = response.get("Message") or f"{action or 'action'} failed (no message)"
        self.action = action
        self.pbx = pbx
        super().__init__(self.message)


class _LoginRejected(Exception):
    """Wrong username/secret (or an ACL): retried with backoff, logged as an error."""


# -- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResyncSnapshot:
    """The PBX's own lists right after a (re)connect, for rebuilding call state."""

    channels: list[AmiMessage]
    """``CoreShowChannel`` items."""
    queue_status: list[AmiMessage]
    """``QueueParams`` / ``QueueMember`` / ``QueueEntry`` items."""
    device_states: list[AmiMessage]
    """``DeviceStateChange`` items, or ``ExtensionStatus`` items if ``DeviceStateList`` was
    refused, or empty if both were."""
    at: float
    """Wall-clock time the lists were complete."""
    fully_booted: AmiMessage | None = None
    """The last ``FullyBooted`` event of this connection (its ``Uptime`` tells a restarted
    PBX from a link loss: the event itself is delivered to ``on_event`` after the snapshot)."""


class AmiEventList(list[AmiMessage]):
    """Items of an event-list action; the first response and the ``...Complete`` event too."""

    def __init__(
        self, items: Iterable[AmiMessage], response: AmiMessage, complete: AmiMessage | None
    ) -> None:
        super().__init__(items)
        self.response = response
        self.complete = complete


@dataclass
class LinkCounters:
    """Numbers for metrics; only ever incremented (``last_*`` are wall-clock times)."""

    connects: int = 0
    """TCP connection attempts."""
    reconnects: int = 0
    """Attempts after the first one (each follows a backoff delay)."""
    logins: int = 0
    login_failures: int = 0
    heartbeat_failures: int = 0
    resyncs: int = 0
    events: int = 0
    parse_problems: int = 0
    callback_errors: int = 0
    action_timeouts: int = 0
    last_event_at: float | None = None
    last_up_at: float | None = None


class Backoff:
    """Capped exponential backoff with jitter: ``initial`` doubling up to ``maximum``.

    Each delay is drawn from ``[d/2, d]`` so that many gateways losing the same PBX do not
    reconnect in lockstep.
    """

    def __init__(self, initial: float, maximum: float, *, rng: random.Random | None = None) -> None:
        self.initial = min(initial, maximum)
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2 ** min(self.failures, 32)))
        self.failures += 1
        return base * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


# -- panoramisk subclasses ----------------------------------------------------------------


class _LinkAction(Action):
    """A panoramisk ``Action`` (ActionID, future) with our wire encoding and completion rule.

    panoramisk guesses list completion from message texts and never resolves a list action
    that Asterisk refuses; here a list is complete on ``EventList: Complete`` (or a
    ``...Complete`` event from old modules) and an error response ends it at once.
    """

    def __init__(self, name: str, fields: Fields, *, as_list: bool) -> None:
        super().__init__({"Action": name}, as_list=as_list)
        items = list(fields.items() if isinstance(fields, Mapping) else fields)
        if any(k.lower() == "actionid" for k, _ in items):
            raise ValueError("the ActionID is assigned by the link")
        self.name = name
        # encode_action refuses CR/LF in keys and values (no action injection).
        self.wire = encode_action(name, [("ActionID", self.id), *items])
        self.complete = False

    def add_message(self, message: AmiMessage) -> bool:
        """Take one message with our ActionID; True when nothing more will come for it.

        A single-response action resolves on its first message; if that message opens a
        list anyway, the items are still consumed here (not leaked to ``on_event``).
        """
        self.responses.append(message)
        if len(self.responses) == 1:
            done = not _opens_list(message)
            if not self.as_list and not self.future.done():
                self.future.set_result(message)
        else:
            done = _ends_list(message)
        if done:
            self.complete = True
            if not self.future.done():
                self.future.set_result(self.responses)
        return done


def _opens_list(message: AmiMessage) -> bool:
    """A success response announcing list items (``EventList: start`` or old "will follow")."""
    if message.event is not None:
        return not _ends_list(message)
    if (message.response or "").lower() in _ERROR_RESPONSES:
        return False
    if (message.get("EventList") or "").lower() == "start":
        return True
    return "will follow" in (message.get("Message") or "").lower()


def _ends_list(message: AmiMessage) -> bool:
    """The ``...Complete`` event (``EventList: Complete``; old modules only name it so)."""
    name = message.event
    if name is None:
        return (message.response or "").lower() in _ERROR_RESPONSES
    marker = message.get("EventList")
    if marker is not None:
        return marker.lower() == "complete"
    return name.endswith("Complete")


PARSE_SLICE = 16 * 1024
"""Largest piece of a TCP read handed to the parser at once."""


class _LinkProtocol(AMIProtocol):
    """One TCP connection: bytes -> AmiParser -> responses to actions, events to the link."""

    def __init__(self, link: AmiLink) -> None:
        super().__init__()
        self.link = link
        self.parser = AmiParser(on_problem=link._on_parse_problem)
        self.lost = asyncio.Event()
        self.wake = asyncio.Event()
        self.resync_wanted = False
        self.fully_booted: AmiMessage | None = None
        self.abandoned: OrderedDict[str, bool] = OrderedDict()

    # asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.factory = self.link._manager
        self.log = log
        self.encoding = "utf-8"

    def data_received(self, data: bytes) -> None:
        # asyncio hands over up to 256 KiB at once in a burst; parsing it in bounded slices
        # keeps few messages alive at a time (cache-friendly: bench/ami_ingest.py measures
        # +35% at 256 KiB reads) without changing what is delivered or in which order.
        if len(data) <= PARSE_SLICE:
            self._handle(self.parser.feed(data))
            return
        view = memoryview(data)
        for start in range(0, len(data), PARSE_SLICE):
            self._handle(self.parser.feed(bytes(view[start : start + PARSE_SLICE])))

    def _handle(self, messages: list[AmiMessage]) -> None:
        if not messages:
            return
        link = self.link
        responses = self.responses
        delivered = 0
        for msg in messages:
            aid = msg.action_id
            if aid is not None:
                action = responses.get(aid)
                if action is not None:
                    if action.add_message(msg):
                        del responses[aid]
                    continue
                if self.abandoned and self._late(aid, msg):
                    continue
            name = msg.event
            if name is None:
                log.debug(
                    "AMI response for no pending action dropped",
                    extra={"pbx": link.pbx_name, "action_id": aid},
                )
                continue
            delivered += 1
            if name in _CONTROL_EVENTS and link._control_event(self, name, msg):
                continue
            buffer = link._buffer
            if buffer is not None:
                buffer.append(msg)
            else:
                link._dispatch(msg)
        if delivered:
            link.counters.events += delivered
            link.counters.last_event_at = time.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail_pending()
        if not self.lost.is_set():
            self.lost.set()
            self.wake.set()
            self.link._manager.connection_lost(exc)

    # panoramisk AMIProtocol -------------------------------------------------------------

    def send(self, data: _LinkAction, as_list: bool | None = None) -> asyncio.Future[Any]:
        """Register the action by ActionID and write its bytes (never re-sent later)."""
        if self.closed or self.lost.is_set() or self.transport.is_closing():
            raise AmiNotConnected(f"PBX {self.link.pbx_name} is not connected")
        self.responses[data.id] = data
        self.transport.write(data.wire)
        return data.future

    def close(self) -> None:
        """Close (flushing writes); pending actions fail instead of being queued again."""
        self._fail_pending()
        if not self.closed:
            self.closed = True
            self.transport.close()

    # ours ---------------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection now (dead link: nothing left to flush)."""
        self._fail_pending()
        self.closed = True
        self.transport.abort()

    def abandon(self, action: _LinkAction) -> None:
        """Forget a timed-out action; its late answer is dropped, not taken for events."""
        self.responses.pop(action.id, None)
        if action.complete:
            return
        self.abandoned[action.id] = bool(action.as_list)
        while len(self.abandoned) > _MAX_ABANDONED:
            self.abandoned.popitem(last=False)

    def _late(self, aid: str, msg: AmiMessage) -> bool:
        """True if ``msg`` belongs to an abandoned action and must be dropped."""
        as_list = self.abandoned.get(aid)
        if as_list is None:
            return False
        if msg.event is None:  # the late response itself
            if _opens_list(msg):
                self.abandoned[aid] = True  # drop its items too
            else:
                del self.abandoned[aid]
            return True
        if not as_list:
            return False  # e.g. OriginateResponse of a timed-out async Originate: an event
        if _ends_list(msg):
            del self.abandoned[aid]
        return True

    def _fail_pending(self) -> None:
        if not self.responses:
            return
        pending = {id(a): a for a in self.responses.values()}.values()
        self.responses.clear()
        for action in pending:
            if not action.future.done():
                action.future.set_exception(
                    AmiNotConnected(
                        f"PBX {self.link.pbx_name} link lost while waiting for the answer to "
                        f"{action.name}"
                    )
                )


class _LinkManager(Manager):
    """panoramisk's Manager with its own timers switched off: AmiLink drives connect,
    login, heartbeat and reconnect (panoramisk pings without checking replies and retries
    on a fixed delay)."""

    def __init__(self, link: AmiLink, **config: Any) -> None:
        super().__init__(**config)
        self.link = link

    async def open(self, timeout: float) -> _LinkProtocol:
        """One TCP connection, made with the configured ``protocol_factory``."""
        self.loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, protocol = await self.loop.create_connection(
                self.config["protocol_factory"], self.config["host"], self.config["port"]
            )
        self.protocol = protocol
        self.responses = protocol.responses
        self._connected = True
        return protocol

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("AmiLink opens connections itself (use AmiLink.start)")

    def ping(self) -> None:
        """Disabled: AmiLink's heartbeat checks that Ping is answered."""

    def connection_lost(self, exc: Exception | None) -> None:
        """Disabled reconnect timer: AmiLink's supervisor reconnects with backoff."""
        self._connected = False


# -- the link -----------------------------------------------------------------------------


class AmiLink:
    """A supervised AMI connection to one PBX; ``async with AmiLink(server, ...)`` runs it.

    ``on_event(msg)`` gets every event (synchronous: keep it cheap, it runs in the read
    path); ``on_resync(snapshot)`` gets the lists after each login (may be async);
    ``on_state(state)`` gets ``connecting``/``connected``/``resyncing``/``up``/``down``.
    Exceptions in callbacks are logged and counted, never fatal to the link.
    """

    def __init__(
        self,
        server: AmiServer,
        *,
        on_event: EventCallback | None = None,
        on_resync: ResyncCallback | None = None,
        on_state: StateCallback | None = None,
        reconnect_initial_delay: float = 0.5,
        connect_timeout: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server
        self.pbx_name = server.name
        self.on_event = on_event
        self.on_resync = on_resync
        self.on_state = on_state
        self.action_timeout = server.action_timeout
        self.ping_interval = server.ping_interval
        self.ping_timeout = server.ping_timeout
        self.connect_timeout = connect_timeout or server.action_timeout
        self.backoff = Backoff(reconnect_initial_delay, server.reconnect_max_delay, rng=rng)
        self.counters = LinkCounters()
        self.state: LinkState = "down"
        self.ami_version: str | None = None
        """From the banner of the current (or last) connection, e.g. ``11.0.0``."""
        self._manager = _LinkManager(
            self,
            host=server.host,
            port=server.port,
            protocol_factory=lambda: _LinkProtocol(self),
            encoding="utf-8",
            log=log,
        )
        self._conn: _LinkProtocol | None = None
        self._buffer: list[AmiMessage] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._up = asyncio.Event()
        self._problems_this_conn = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background (needs a running event loop); idempotent."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"ami-link-{self.pbx_name}"
        )

    async def stop(self) -> None:
        """Log off cleanly if logged in, then cancel every task; the state ends ``down``."""
        self._stopping = True
        conn = self._conn
        if conn is not None and self.state in _LOGGED_IN and not conn.closed:
            try:
                await self._request(conn, "Logoff", (), timeout=min(1.0, self.action_timeout))
            except AmiError:
                pass
        task, self._task = self._task, None
        await cancel_and_wait([task])
        self._set_state("down")

    async def __aenter__(self) -> AmiLink:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_up(self, timeout: float | None = None) -> None:
        """Until the link is ``up`` (resynced, events live); AmiTimeout after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            raise AmiTimeout(
                f"PBX {self.pbx_name} link not up within {timeout:g} s (state {self.state})"
            ) from None

    @property
    def connected(self) -> bool:
        """Logged in (actions can be sent), whether or not the resync is finished."""
        return self.state in _LOGGED_IN

    # -- actions ----------------------------------------------------------------------------

    async def action(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> AmiMessage:
        """Send an action and return its single response.

        Raises AmiActionError on ``Response: Error``, AmiTimeout if unanswered within
        ``timeout`` (default ``action_timeout``), AmiNotConnected at once if the link is down.
        """
        conn = self._require_conn()
        response: AmiMessage = await self._request(conn, name, fields, timeout=timeout)
        if (response.response or "").lower() in _ERROR_RESPONSES:
            raise AmiActionError(response, action=name, pbx=self.pbx_name)
        return response

    async def action_list(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> AmiEventList:
        """Send an event-list action and return every item once the list is complete.

        The result excludes the first response and the ``...Complete`` event (available as
        ``.response`` and ``.complete``). Errors as for :meth:`action`; the timeout covers
        the whole list.
        """
        return await self._list(self._require_conn(), name, fields, timeout)

    def _require_conn(self) -> _LinkProtocol:
        conn = self._conn
        if conn is None or self.state not in _LOGGED_IN or conn.closed:
            raise AmiNotConnected(f"PBX {self.pbx_name} is not connected (link {self.state})")
        return conn

    async def _list(
        self, conn: _LinkProtocol, name: str, fields: Fields, timeout: float | None
    ) -> AmiEventList:
        messages: list[AmiMessage] = await self._request(
            conn, name, fields, timeout=timeout, as_list=True
        )
        first = messages[0]
        if first.event is None and (first.response or "").lower() in _ERROR_RESPONSES:
            raise AmiActionError(first, action=name, pbx=self.pbx_name)
        last = messages[-1]
        complete = last if len(messages) > 1 and last.event is not None else None
        items = messages[1:-1] if complete is not None else messages[1:]
        return AmiEventList(items, first, complete)

    async def _request(
        self,
        conn: _LinkProtocol,
        name: str,
        fields: Fields,
        *,
        timeout: float | None = None,
        as_list: bool = False,
    ) -> Any:
        """Send through panoramisk's Manager and wait for the answer (one message or a list)."""
        limit = self.action_timeout if timeout is None else timeout
        action = _LinkAction(name, fields, as_list=as_list)
        if self._manager.protocol is not conn:
            raise AmiNotConnected(f"PBX {self.pbx_name} is not connected")
        future = self._manager.send_action(action)
        try:
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            conn.abandon(action)
            self.counters.action_timeouts += 1
            raise AmiTimeout(
                f"PBX {self.pbx_name} did not answer {name} within {limit:g} s"
            ) from None
        except asyncio.CancelledError:
            conn.abandon(action)
            raise

    # -- supervisor -------------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, log in, resync, stay up; on any failure go down, wait, and start again."""
        first = True
        while not self._stopping:
            if not first:
                self.counters.reconnects += 1
            first = False
            try:
                await self._session()
                if not self._stopping:
                    log.warning(
                        "AMI link to PBX %s lost", self.pbx_name, extra={"pbx": self.pbx_name}
                    )
            except _LoginRejected as exc:
                self.counters.login_failures += 1
                log.error(
                    "PBX %s rejected the AMI login of user %r: %s (check username/secret "
                    "in manager.conf); will retry",
                    self.pbx_name, self.server.username, exc,
                    extra={"pbx": self.pbx_name, "ami_user": self.server.username,
                           "reason": str(exc)},
                )  # fmt: skip
            except (OSError, TimeoutError) as exc:
                if not self._stopping:
                    log.warning(
                        "AMI link to PBX %s (%s:%d) failed: %s",
                        self.pbx_name, self.server.host, self.server.port,
                        exc or type(exc).__name__,
                        extra={"pbx": self.pbx_name, "reason": str(exc) or type(exc).__name__},
                    )  # fmt: skip
            except Exception:
                log.exception(
                    "AMI link to PBX %s failed unexpectedly", self.pbx_name,
                    extra={"pbx": self.pbx_name},
                )  # fmt: skip
            finally:
                self._teardown()
            if self._stopping:
                return
            delay = self.backoff.next_delay()
            log.info(
                "reconnecting to PBX %s in %.2f s",
                self.pbx_name, delay, extra={"pbx": self.pbx_name, "delay_s": round(delay, 3)},
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        """One connection's life; returns when the connection is lost."""
        self._set_state("connecting")
        self.counters.connects += 1
        self._problems_this_conn = 0
        self._buffer = []  # nothing is delivered before the first resync completes
        conn = await self._manager.open(self.connect_timeout)
        self._conn = conn
        response: AmiMessage = await self._request(
            conn,
            "Login",
            {"Username": self.server.username, "Secret": self.server.secret, "Events": "on"},
        )
        self.ami_version = (conn.parser.banner or "").partition("/")[2] or None
        if (response.response or "").lower() != "success":
            raise _LoginRejected(response.get("Message") or response.response or "no reason")
        self.backoff.reset()
        self.counters.logins += 1
        log.info(
            "AMI link to PBX %s logged in (AMI %s)", self.pbx_name, self.ami_version or "?",
            extra={"pbx": self.pbx_name, "ami_version": self.ami_version},
        )  # fmt: skip
        self._set_state("connected")
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(conn))
        try:
            while True:
                await self._resync(conn)
                while not (conn.lost.is_set() or conn.resync_wanted):
                    await conn.wake.wait()
                    conn.wake.clear()
                if conn.lost.is_set():
                    return
                conn.resync_wanted = False
        finally:
            heartbeat.cancel()

    async def _resync(self, conn: _LinkProtocol) -> None:
        """Collect the three lists, hand them over, then release the buffered events."""
        self._set_state("resyncing")
        if self._buffer is None:
            self._buffer = []
        channels, queues, devices = await asyncio.gather(
            self._optional_list(conn, "CoreShowChannels"),
            self._optional_list(conn, "QueueStatus"),
            self._device_states(conn),
        )
        snapshot = ResyncSnapshot(
            channels=channels,
            queue_status=queues,
            device_states=devices,
            at=time.time(),
            fully_booted=conn.fully_booted,
        )
        self.counters.resyncs += 1
        log.info(
            "PBX %s resynced: %d channels, %d queue items, %d device states",
            self.pbx_name, len(channels), len(queues), len(devices),
            extra={"pbx": self.pbx_name, "channels": len(channels),
                   "queue_items": len(queues), "device_states": len(devices)},
        )  # fmt: skip
        if self.on_resync is not None:
            try:
                result = self.on_resync(snapshot)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.counters.callback_errors += 1
                log.exception("on_resync callback failed", extra={"pbx": self.pbx_name})
        self._flush_buffer()
        if conn.closed or conn.lost.is_set():
            return
        self.counters.last_up_at = time.time()
        self._set_state("up")

    async def _optional_list(self, conn: _LinkProtocol, name: str) -> list[AmiMessage]:
        """A resync list; a PBX that refuses it (module not loaded) gives an empty list."""
        try:
            return list(await self._list(conn, name, (), None))
        except AmiActionError as exc:
            log.warning(
                "PBX %s refused %s during resync: %s", self.pbx_name, name, exc,
                extra={"pbx": self.pbx_name, "ami_action": name, "reason": str(exc)},
            )  # fmt: skip
            return []

    async def _device_states(self, conn: _LinkProtocol) -> list[AmiMessage]:
        try:
            return list(await self._list(conn, "DeviceStateList", (), None))
        except AmiActionError:
            return await self._optional_list(conn, "ExtensionStateList")

    async def _heartbeat(self, conn: _LinkProtocol) -> None:
        """Ping every ``ping_interval``; no answer within ``ping_timeout`` = dead link."""
        while not conn.lost.is_set():
            await asyncio.sleep(self.ping_interval)
            try:
                await self._request(conn, "Ping", (), timeout=self.ping_timeout)
            except AmiTimeout:
                self.counters.heartbeat_failures += 1
                log.warning(
                    "PBX %s did not answer Ping within %g s: link dead, reconnecting",
                    self.pbx_name, self.ping_timeout,
                    extra={"pbx": self.pbx_name, "timeout_s": self.ping_timeout},
                )  # fmt: skip
                conn.abort()
                return
            except AmiNotConnected:
                return

    def _teardown(self) -> None:
        """After a connection ends: close it, deliver what was buffered, report down."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            if self._manager.protocol is conn:
                self._manager.protocol = None
        self._flush_buffer()
        self._set_state("down")

    # -- inbound path (called by _LinkProtocol) ---------------------------------------------

    def _dispatch(self, msg: AmiMessage) -> None:
        callback = self.on_event
        if callback is None:
            return
        try:
            callback(msg)
        except Exception:
            self.counters.callback_errors += 1
            log.exception(
                "on_event callback failed on %s", msg.event,
                extra={"pbx": self.pbx_name, "ami_event": msg.event},
            )  # fmt: skip

    def _flush_buffer(self) -> None:
        """Deliver buffered events in order; synchronous, so nothing can overtake them."""
        buffer, self._buffer = self._buffer, None
        if buffer:
            for msg in buffer:
                self._dispatch(msg)

    def _control_event(self, conn: _LinkProtocol, name: str, msg: AmiMessage) -> bool:
        """React to Shutdown / FullyBooted; True if ``msg`` was delivered here already."""
        if name == "Shutdown":
            log.warning(
                "PBX %s is shutting down (Shutdown: %s, Restart: %s); reconnecting",
                self.pbx_name, msg.get("Shutdown"), msg.get("Restart"),
                extra={"pbx": self.pbx_name, "shutdown": msg.get("Shutdown"),
                       "restart": msg.get("Restart")},
            )  # fmt: skip
            conn.close()  # events already read in this chunk are still delivered
            return False
        conn.fully_booted = msg
        if self.state == "up" and not conn.resync_wanted:
            log.info(
                "PBX %s sent FullyBooted (uptime %s s): resyncing", self.pbx_name,
                msg.get("Uptime"), extra={"pbx": self.pbx_name, "uptime": msg.get("Uptime")},
            )  # fmt: skip
            # Deliver FullyBooted itself, buffer what follows until the new resync is done.
            self._dispatch(msg)
            self._buffer = []
            conn.resync_wanted = True
            conn.wake.set()
            return True
        return False

    def _on_parse_problem(self, problem: ParseProblem) -> None:
        self.counters.parse_problems += 1
        self._problems_this_conn += 1
        n = self._problems_this_conn
        if n <= _PROBLEM_LOG_FIRST or n % _PROBLEM_LOG_EVERY == 0:
            log.warning(
                "malformed AMI data from PBX %s: %s", self.pbx_name, problem.detail,
                extra={"pbx": self.pbx_name, "problem": str(problem.kind),
                       "detail": problem.detail, "sample": problem.sample,
                       "stream_offset": problem.stream_offset, "problems_on_connection": n},
            )  # fmt: skip

    def _set_state(self, state: LinkState) -> None:
        if state == self.state:
            return
        self.state = state
        if state == "up":
            self._up.set()
        else:
            self._up.clear()
        log.debug("AMI link %s %s", self.pbx_name, state, extra={"pbx": self.pbx_name})
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                self.counters.callback_errors += 1
                log.exception("on_state callback failed", extra={"pbx": self.pbx_name})
