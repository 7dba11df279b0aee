"""The pure call-state machine: AMI events in, domain events out.

``CallStateMachine.feed(msg, now)`` updates the state from one AMI event and returns the
domain events that follow from it.  No sockets, no clock: an event's time is its ``Timestamp``
field when Asterisk sends one (``timestampevents=yes``), else the ``now`` the caller passes,
else the last time seen.

How a call is tracked
---------------------
* A call is every channel sharing one ``Linkedid``.  Asterisk rewrites the Linkedid of
  channels that join a bridge to the oldest one (attended transfers, merges), so a channel
  whose events start carrying another Linkedid moves to that call; a call left without
  channels that way ends as ``merged_into`` the other.
* A call ends when its last live channel hangs up (or vanished during a link loss, or the PBX
  restarted).  Ended calls and hung-up channels are dropped at once; their ids stay a while in
  bounded "recent" sets so late events for them are ignored instead of re-creating state.
* State is created lazily from whatever event names a channel first (calls that started before
  we connected), but only from events whose *subject* is that channel: a channel named as
  ``Dest…`` of someone else's event could already be gone and would never be closed.
* Channel technology never matters: a channel's device is its name without the sequence
  suffix (``PJSIP/1001-0000002a`` → ``PJSIP/1001``, both halves of ``Local/1001@ctx-0001;1/;2``
  → ``Local/1001@ctx``), and agents are found from devices and queue interfaces.

Every handler is a dict lookup away from ``feed`` and does O(1) work for the common events
(``VarSet``/``Newexten`` return after a couple of lookups).  Errors inside a handler are
counted in ``counters["errors"]`` and never escape: a bad event must not stop the gateway.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from cti.ami_message import AmiMessage
from cti.domain_events import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallHeld,
    CallRinging,
    CallTransferred,
    CallUnheld,
    CallUpdated,
    DomainEvent,
    PbxResynced,
    QueueCallerAbandoned,
    QueueCallerJoined,
    QueueCallerLeft,
)

from .agents import (
    AVAILABLE,
    ON_CALL,
    RINGING,
    WRAP_UP,
    AgentState,
    device_state_from_queue_status,
)
from .calls import Call, Channel
from .config import INBOUND, INTERNAL, OUTBOUND, CallStateConfig, device_of
from .queues import QueueState

__all__ = ["PBX_RESTART", "VANISHED", "CallStateMachine"]

Getter = Callable[[str], "str | None"]
Out = list[DomainEvent]
Handler = Callable[[Getter, float, Out], None]

VANISHED = "vanished during link loss"
PBX_RESTART = "pbx restart"

_UNKNOWN = frozenset({"", "<unknown>", "unknown", "<null>", "(null)"})
_FINAL_DIRECTIONS = (INBOUND, OUTBOUND)
# Queue outcome of a call per queue: waiting -> (left) -> connecting -> answered -> completed,
# or abandoned.  Only "waiting"/"left"/"connecting" can still be counted as answered/abandoned.
_OPEN_OUTCOMES = ("waiting", "left", "connecting")
_ANSWERED_OUTCOMES = ("connecting", "answered", "completed")
_EXTENSION_STATUS = {
    "-2": None,
    "-1": None,
    "0": "NOT_INUSE",
    "1": "INUSE",
    "2": "BUSY",
    "4": "UNAVAILABLE",
    "8": "RINGING",
    "9": "RINGINUSE",
    "16": "ONHOLD",
    "17": "ONHOLD",
}
_VAR_RECORDING = 1
_VAR_DID = 2
_VAR_KEEP = 3
_MISSING = object()


def _int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if not value:
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def _known(value: str | None) -> str | None:
    """None for Asterisk's placeholders (``<unknown>``) and empty values."""
    if value is None or value.lower() in _UNKNOWN:
        return None
    return value


def _duration(value: str | None) -> float | None:
    """``HH:MM:SS`` (CoreShowChannel ``Duration``) or plain seconds, in seconds."""
    if not value:
        return None
    if ":" not in value:
        return _float(value)
    total = 0.0
    for part in value.split(":"):
        number = _float(part)
        if number is None:
            return None
        total = total * 60 + number
    return total


def _getter(msg: AmiMessage | Mapping[str, str]) -> Getter:
    """Fast ``get`` with lower-case keys: AmiMessage keeps its first values in ``_first``."""
    first = getattr(msg, "_first", None)
    if isinstance(first, dict):
        return first.get
    lowered = {k.lower(): v for k, v in msg.items()}
    return lowered.get


class _Recent:
    """Insertion-ordered set that forgets its oldest entries beyond ``size`` (bounded memory)."""

    __slots__ = ("_items", "_size")

    def __init__(self, size: int) -> None:
        self._items: dict[str, None] = {}
        self._size = max(1, size)

    def add(self, key: str) -> None:
        items = self._items
        items[key] = None
        if len(items) > self._size:
            del items[next(iter(items))]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class CallStateMachine:
    """Calls, queues and agents of one PBX, rebuilt from its AMI event stream."""

    def __init__(self, config: CallStateConfig | None = None) -> None:
        self.config = config or CallStateConfig()
        size = self.config.recent_ended_size
        self._channels: dict[str, Channel] = {}
        self._calls: dict[str, Call] = {}
        self._queues: dict[str, QueueState] = {}
        self._agents: dict[str, AgentState] = {}
        self._bridges: dict[str, set[str]] = {}
        self._ended = _Recent(size)
        self._hungup = _Recent(size)
        self._aliases: dict[str, str] = {}  # merged call id -> surviving call id
        self._members: dict[str, tuple[str, str | None]] = {}  # interface -> (agent, state if.)
        self._agent_by_device: dict[str, str] = {}  # queue state interface -> agent
        self._agent_cache: dict[str, str | None] = {}
        self._context_cache: dict[str, str | None] = {}
        self._wrapping: dict[str, float] = {}  # agent -> wrap-up deadline
        self._next_wrapup = math.inf
        self._dirty: set[str] = set()  # queues whose stats changed during this feed
        self._last_stats: dict[str, tuple[int, ...]] = {}
        self._now = 0.0
        self._clock = False  # whether any real time (Timestamp or now) was ever given
        self._boot: float | None = None
        self._var_kinds: dict[str, int] = {"MIXMONITOR_FILENAME": _VAR_RECORDING}
        for name in self.config.did_variables:
            self._var_kinds[name] = _VAR_DID
        self._var_prefixes = tuple(self.config.variable_prefixes)
        self.counters: dict[str, int] = {"events": 0, "ignored": 0, "late": 0, "errors": 0}
        self.last_error: str | None = None
        self.calls: Mapping[str, Call] = MappingProxyType(self._calls)
        self.queues: Mapping[str, QueueState] = MappingProxyType(self._queues)
        self.agents: Mapping[str, AgentState] = MappingProxyType(self._agents)
        self.channels: Mapping[str, Channel] = MappingProxyType(self._channels)
        self._dispatch: dict[str, Handler] = {
            "Newchannel": self._on_newchannel,
            "Newstate": self._on_newstate,
            "Newexten": self._on_newexten,
            "NewCallerid": self._on_newcallerid,
            "VarSet": self._on_varset,
            "Hangup": self._on_hangup,
            "Rename": self._on_rename,
            "DialBegin": self._on_dialbegin,
            "DialState": self._on_dialstate,
            "DialEnd": self._on_dialend,
            "BridgeEnter": self._on_bridgeenter,
            "BridgeLeave": self._on_bridgeleave,
            "BridgeDestroy": self._on_bridgedestroy,
            "BridgeMerge": self._on_bridgemerge,
            "BlindTransfer": self._on_blindtransfer,
            "AttendedTransfer": self._on_attendedtransfer,
            "Hold": self._on_hold,
            "Unhold": self._on_unhold,
            "MixMonitorStart": self._on_mixmonitor_start,
            "MixMonitorStop": self._on_mixmonitor_stop,
            "OriginateResponse": self._on_originateresponse,
            "QueueCallerJoin": self._on_queuecallerjoin,
            "QueueCallerLeave": self._on_queuecallerleave,
            "QueueCallerAbandon": self._on_queuecallerabandon,
            "AgentCalled": self._on_agentcalled,
            "AgentRingNoAnswer": self._on_agentringnoanswer,
            "AgentDump": self._on_agentringnoanswer,
            "AgentConnect": self._on_agentconnect,
            "AgentComplete": self._on_agentcomplete,
            "QueueMemberAdded": self._on_member,
            "QueueMemberStatus": self._on_member,
            "QueueMemberPause": self._on_member,
            "QueueMemberPaused": self._on_member,
            "QueueMemberPenalty": self._on_member,
            "QueueMemberRinginuse": self._on_member,
            "QueueMember": self._on_member,
            "QueueMemberRemoved": self._on_member_removed,
            "QueueParams": self._on_queueparams,
            "QueueEntry": self._on_queueentry,
            "DeviceStateChange": self._on_devicestate,
            "ExtensionStatus": self._on_extensionstatus,
            "FullyBooted": self._on_fullybooted,
            "CoreShowChannel": self._on_listed_channel,
            "Status": self._on_listed_channel,
        }

    # --- public API -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The latest event time seen."""
        return self._now

    def feed(self, msg: AmiMessage, now: float | None = None) -> list[DomainEvent]:
        """Apply one AMI message; return the domain events it causes (often none)."""
        get = _getter(msg)
        counters = self.counters
        counters["events"] += 1
        name = get("event")
        handler = self._dispatch.get(name) if name is not None else None
        if handler is None:
            counters["ignored"] += 1
            return []
        t = self._time(get("timestamp"), now)
        out: Out = []
        try:
            handler(get, t, out)
            if t >= self._next_wrapup:
                self._expire_wrapups(t, out)
            if self._dirty:
                self._flush_stats(t, out)
        except Exception as exc:  # one bad event must never stop the gateway
            counters["errors"] += 1
            self.last_error = f"{name}: {exc!r}"
            self._dirty.clear()
        return out

    def feed_many(
        self, messages: Iterable[AmiMessage], now: float | None = None
    ) -> list[DomainEvent]:
        """``feed`` every message in order; all resulting events in one list."""
        out: list[DomainEvent] = []
        feed = self.feed
        for msg in messages:
            events = feed(msg, now)
            if events:
                out.extend(events)
        return out

    def tick(self, now: float) -> list[DomainEvent]:
        """Let time pass without an event (ends wrap-up periods); call it every second or so."""
        t = self._time(None, now)
        out: Out = []
        if t >= self._next_wrapup:
            self._expire_wrapups(t, out)
        if self._dirty:
            self._flush_stats(t, out)
        return out

    def apply_snapshot(
        self,
        channels: Iterable[AmiMessage],
        queue_status: Iterable[AmiMessage],
        device_states: Iterable[AmiMessage],
        now: float,
    ) -> list[DomainEvent]:
        """Rebuild state after a (re)connect from the PBX's own lists.

        ``channels``: ``CoreShowChannel`` (or ``Status``) items; ``queue_status``:
        ``QueueParams``/``QueueMember``/``QueueEntry`` items; ``device_states``:
        ``DeviceStateChange`` items (``DeviceStateList``).  Channels we knew that are not listed
        hung up while we were away: their calls are closed with cause "vanished during link
        loss" (never left ringing forever).  Unknown listed channels create calls.
        """
        t = self._time(None, now)
        out: Out = []
        closed: list[str] = []
        try:
            listed: dict[str, Getter] = {}
            for msg in channels:
                get = _getter(msg)
                uid = get("uniqueid")
                if uid:
                    listed[uid] = get
            for uid in [u for u in self._channels if u not in listed]:
                self._vanish(uid, t, out, closed)
            for get in listed.values():
                self._listed_channel(get, t, out)
            for call in list(self._calls.values()):
                # rings we only knew from AgentCalled/DialBegin whose channel is gone
                for agent in [a for a in call.ringing if a not in call.agent_channels]:
                    self._unring(call, agent, t, out)
            for bid in list(self._bridges):
                self._bridge_check(bid, t, out)
            self._apply_queue_status(queue_status, t, out)
            for msg in device_states:
                self._on_devicestate(_getter(msg), t, out)
            self._dirty.update(self._queues)
            self._last_stats.clear()
            if t >= self._next_wrapup:
                self._expire_wrapups(t, out)
            self._flush_stats(t, out)
        except Exception as exc:
            self.counters["errors"] += 1
            self.last_error = f"apply_snapshot: {exc!r}"
        out.append(
            PbxResynced(
                at=t,
                reason="snapshot",
                open_calls=len(self._calls),
                closed_calls=tuple(closed),
                queues=tuple(sorted(self._queues)),
                agents=len(self._agents),
            )
        )
        return out

    def close_all(self, now: float, reason: str = PBX_RESTART) -> list[DomainEvent]:
        """Close every open call (PBX restarted: nothing of the old state survives)."""
        t = self._time(None, now)
        out: Out = []
        closed = self._close_all(t, reason, out)
        self._flush_stats(t, out)
        out.append(
            PbxResynced(
                at=t,
                reason=reason,
                open_calls=len(self._calls),
                closed_calls=tuple(closed),
                queues=tuple(sorted(self._queues)),
                agents=len(self._agents),
            )
        )
        return out

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready picture of calls, queues and agents (supervisor view, debugging)."""
        t = self._now if now is None else now
        return {
            "at": t,
            "calls": [call.to_dict(t) for call in self._calls.values()],
            "queues": {
                name: q.to_dict(self._queue_stats(q, t), t) for name, q in self._queues.items()
            },
            "agents": {aid: a.to_dict(t) for aid, a in self._agents.items()},
            "counters": dict(self.counters),
        }

    def queue_stats(self, queue: str, now: float | None = None) -> Any:
        """Current ``QueueStats`` of one queue (None if never seen)."""
        q = self._queues.get(queue)
        if q is None:
            return None
        return self._queue_stats(q, self._now if now is None else now)

    # --- time -----------------------------------------------------------------------------

    def _time(self, stamp: str | None, now: float | None) -> float:
        t: float | None = _float(stamp) if stamp is not None else None
        if t is None:
            if now is None:
                return self._now
            t = now
        self._clock = True
        if t > self._now:
            self._now = t
        return t

    def _since(self, start: float | None, t: float) -> float | None:
        """``t - start`` when we have a clock; None without one (all times would be equal)."""
        if start is None or not self._clock:
            return None
        return max(0.0, t - start)

    # --- channels and calls ---------------------------------------------------------------

    def _resolve(self, call_id: str) -> str:
        aliases = self._aliases
        hops = 0
        while call_id in aliases and hops < 16:
            call_id = aliases[call_id]
            hops += 1
        return call_id

    def _chan(self, get: Getter, t: float, out: Out, create: bool = True) -> Channel | None:
        """The subject channel of an event (created lazily), following Linkedid changes."""
        uid = get("uniqueid")
        if not uid:
            return None
        ch = self._channels.get(uid)
        if ch is not None:
            lid = get("linkedid")
            if lid and lid != ch.linkedid:
                self._relink(ch, lid, t, out)
            return ch
        if not create:
            return None
        return self._new_channel(uid, get("channel") or "", get("linkedid") or uid, t, out, get)

    def _new_channel(
        self, uid: str, name: str, lid: str, t: float, out: Out, get: Getter | None
    ) -> Channel | None:
        if uid in self._hungup:
            self.counters["late"] += 1
            return None
        call_id = self._resolve(lid)
        if call_id in self._ended:
            self.counters["late"] += 1
            return None
        call = self._calls.get(call_id)
        if call is None:
            call = Call(call_id, t)
            self._calls[call_id] = call
        ch = Channel(uid, name, call_id, lid, device_of(name))
        self._channels[uid] = ch
        call.channels.add(uid)
        agent = call.ring_targets.pop(uid, None) or self._agent_for_device(ch.device)
        if agent is not None:
            self._attach_agent(ch, call, agent)
        if get is not None:
            ch.state = get("channelstatedesc")
            ch.caller_num = _known(get("calleridnum"))
            ch.caller_name = _known(get("calleridname"))
            context = get("context")
            if context and call.direction not in _FINAL_DIRECTIONS:
                self._classify(call, ch, context, get("exten") or "", t, out)
        return ch

    def _attach_agent(self, ch: Channel, call: Call, agent: str) -> None:
        if ch.agent is not None and ch.agent != agent:
            old = call.agent_channels.get(ch.agent)
            if old is not None:
                old.discard(ch.uid)
                if not old:
                    del call.agent_channels[ch.agent]
        ch.agent = agent
        chans = call.agent_channels.get(agent)
        if chans is None:
            call.agent_channels[agent] = {ch.uid}
        else:
            chans.add(ch.uid)

    def _relink(self, ch: Channel, lid: str, t: float, out: Out) -> None:
        """Asterisk gave the channel another Linkedid (bridge joined an older call): follow."""
        ch.linkedid = lid
        target = self._resolve(lid)
        if target == ch.call_id or target in self._ended:
            return
        self._move_channel(ch, target, t, out)

    def _move_channel(self, ch: Channel, target_id: str, t: float, out: Out) -> None:
        old = self._calls.get(ch.call_id)
        new = self._calls.get(target_id)
        if new is None:
            new = Call(target_id, old.started_at if old is not None else t)
            self._calls[target_id] = new
        uid = ch.uid
        agent = ch.agent
        ch.call_id = target_id
        new.channels.add(uid)
        if agent is not None:
            chans = new.agent_channels.get(agent)
            if chans is None:
                new.agent_channels[agent] = {uid}
            else:
                chans.add(uid)
        if old is not None:
            old.channels.discard(uid)
            self._inherit(new, old)
            if agent is not None:
                a = self._agents.get(agent)
                if a is not None and old.call_id in a.talking:
                    a.talking.add(target_id)  # no on_call -> available -> on_call flicker
                chans = old.agent_channels.get(agent)
                if chans is not None:
                    chans.discard(uid)
                    if not chans:
                        del old.agent_channels[agent]
                        self._agent_leaves(agent, old, t, out)
        if ch.bridge is not None:
            self._bridge_check(ch.bridge, t, out)
        if old is not None and not old.channels:
            self._aliases[old.call_id] = target_id
            if len(self._aliases) > self.config.recent_ended_size:
                del self._aliases[next(iter(self._aliases))]
            self._end_call(old, t, out, merged_into=target_id)

    @staticmethod
    def _inherit(new: Call, old: Call) -> None:
        """What the surviving call does not know yet, it learns from the merged one."""
        if new.direction is None and old.direction is not None:
            new.direction = old.direction
        if new.external_raw is None and old.external_raw is not None:
            new.external_raw = old.external_raw
            new.external_number = old.external_number
            new.customer_uid = old.customer_uid
        if new.caller_name is None:
            new.caller_name = old.caller_name
        if new.did is None:
            new.did = old.did
        if new.queue is None:
            new.queue = old.queue
        if new.recording is None:
            new.recording = old.recording
        if new.originate is None:
            new.originate = old.originate
        for key, value in old.variables.items():
            new.variables.setdefault(key, value)

    def _set_external(self, call: Call, raw: str | None) -> bool:
        raw = _known(raw)
        if raw is None or raw == call.external_raw:
            return False
        call.external_raw = raw
        try:
            call.external_number = self.config.normalize_number(raw)
        except Exception:
            call.external_number = None
        return True

    def _context_class(self, context: str) -> str | None:
        cache = self._context_cache
        cls = cache.get(context, _MISSING)
        if cls is _MISSING:
            cls = self.config.context_class(context)
            if len(cache) > 4096:
                cache.clear()
            cache[context] = cls
        return cls  # type: ignore[return-value]

    def _classify(
        self, call: Call, ch: Channel, context: str, exten: str, t: float, out: Out
    ) -> None:
        """Decide direction, external number and DID from where a channel runs."""
        cls = self._context_class(context)
        config = self.config
        changes: dict[str, Any] = {}
        if cls == INBOUND or (exten and exten in config.dids):
            call.direction = INBOUND
            changes["direction"] = INBOUND
            call.customer_uid = ch.uid
            if exten and exten != "s" and call.did is None:
                call.did = exten
                changes["did"] = exten
            if self._set_external(call, ch.caller_num):
                changes["external_number"] = call.external_number
                changes["external_number_raw"] = call.external_raw
            if call.caller_name is None and ch.caller_name is not None:
                call.caller_name = ch.caller_name
                changes["caller_name"] = ch.caller_name
        elif cls == OUTBOUND or (cls == INTERNAL and exten and config.is_external_exten(exten)):
            call.direction = OUTBOUND
            changes["direction"] = OUTBOUND
            if exten and self._set_external(call, exten):
                changes["external_number"] = call.external_number
                changes["external_number_raw"] = call.external_raw
        elif cls == INTERNAL and call.direction is None:
            call.direction = INTERNAL
            changes["direction"] = INTERNAL
        if changes:
            out.append(CallUpdated(at=t, call_id=call.call_id, changes=changes))

    def _drop_bridge(self, ch: Channel) -> None:
        bid = ch.bridge
        if bid is None:
            return
        ch.bridge = None
        members = self._bridges.get(bid)
        if members is not None:
            members.discard(ch.uid)
            if not members:
                del self._bridges[bid]

    def _end_call(
        self,
        call: Call,
        t: float,
        out: Out,
        cause_text: str | None = None,
        merged_into: str | None = None,
    ) -> None:
        """Emit ``call.ended`` once and forget the call."""
        call_id = call.call_id
        if self._calls.pop(call_id, None) is None:
            return
        self._ended.add(call_id)
        for uid in call.channels:  # leftovers when closing without hangups
            ch = self._channels.pop(uid, None)
            if ch is not None:
                self._hungup.add(uid)
                self._drop_bridge(ch)
                self._drop_waiting(ch, call, t, out, infer_abandon=False)
        call.channels.clear()
        if call.hold_started is not None:
            call.hold_seconds += max(0.0, t - call.hold_started)
            call.hold_started = None
        talk: float | None = None
        if call.answered_at is not None:
            if self._clock:
                talk = max(0.0, t - call.answered_at)
            else:
                talk = call.talk_reported
        cause, text = call.cause, call.cause_text
        if cause_text is not None:
            cause, text = None, cause_text
        elif merged_into is not None and text is None:
            text = f"merged into {merged_into}"
        out.append(
            CallEnded(
                at=t,
                call_id=call_id,
                direction=call.direction,
                external_number=call.external_number,
                external_number_raw=call.external_raw,
                caller_name=call.caller_name,
                did=call.did,
                queue=call.queue,
                started_at=call.started_at,
                answered_at=call.answered_at,
                ended_at=t,
                answered=call.answered_at is not None,
                abandoned="abandoned" in call.queue_outcomes.values(),
                answered_by=call.answered_by,
                agents_rung=tuple(call.agents_rung),
                agents_talked=tuple(call.agents_talked),
                wait_seconds=call.wait_seconds,
                talk_seconds=talk,
                hold_seconds=call.hold_seconds,
                cause=cause,
                cause_text=text,
                recording=call.recording,
                transfers=tuple(call.transfers),
                originate=call.originate,
                variables=dict(call.variables),
                merged_into=merged_into,
            )
        )
        for agent in {*call.ringing, *call.connected, *call.agent_channels}:
            self._agent_leaves(agent, call, t, out)
        call.ring_targets.clear()

    def _close_all(self, t: float, reason: str, out: Out) -> list[str]:
        closed = list(self._calls)
        for call in list(self._calls.values()):
            self._end_call(call, t, out, cause_text=reason)
        self._channels.clear()
        self._bridges.clear()
        for q in self._queues.values():
            if q.waiting:
                q.waiting.clear()
                self._dirty.add(q.name)
        self._wrapping.clear()
        self._next_wrapup = math.inf
        for a in self._agents.values():
            a.ringing.clear()
            a.talking.clear()
            a.device_state = None
            a.wrapup_until = 0.0
            self._touch(a, t, out)
        return closed

    def _vanish(self, uid: str, t: float, out: Out, closed: list[str]) -> None:
        """A channel we knew is gone from the PBX's list: it hung up while we were away."""
        ch = self._channels.pop(uid, None)
        if ch is None:
            return
        self._hungup.add(uid)
        self._drop_bridge(ch)
        call = self._calls.get(ch.call_id)
        if call is None:
            return
        self._drop_waiting(ch, call, t, out, infer_abandon=False)
        call.channels.discard(uid)
        self._detach_agent(ch, call, t, out)
        if not call.channels:
            closed.append(call.call_id)
            self._end_call(call, t, out, cause_text=VANISHED)

    def _detach_agent(self, ch: Channel, call: Call, t: float, out: Out) -> None:
        agent = ch.agent
        if agent is None:
            return
        chans = call.agent_channels.get(agent)
        if chans is not None:
            chans.discard(ch.uid)
            if not chans:
                del call.agent_channels[agent]
                self._agent_leaves(agent, call, t, out)

    def _drop_waiting(
        self, ch: Channel, call: Call, t: float, out: Out, infer_abandon: bool
    ) -> None:
        """Take a caller channel off every waiting list (missed Leave / vanished)."""
        queues = ch.waiting_in
        if not queues:
            return
        ch.waiting_in = None
        for queue in queues:
            q = self._queues.get(queue)
            if q is None:
                continue
            entry = q.waiting.pop(ch.uid, None)
            self._dirty.add(queue)
            if not infer_abandon or call.queue_outcomes.get(queue) not in ("waiting", "left"):
                continue
            # The caller hung up in the queue but we missed QueueCallerAbandon.
            wait = self._since(entry[0] if entry is not None else None, t)
            self._count_abandon(call, q, wait)
            out.append(
                QueueCallerAbandoned(
                    at=t, queue=queue, call_id=call.call_id, channel=ch.name, wait_seconds=wait
                )
            )
            out.append(
                QueueCallerLeft(
                    at=t,
                    queue=queue,
                    call_id=call.call_id,
                    channel=ch.name,
                    wait_seconds=wait,
                    reason="hangup",
                )
            )

    # --- agents on calls ------------------------------------------------------------------

    def _ring(
        self,
        call: Call,
        agent: str,
        device: str | None,
        channel: str | None,
        member_name: str | None,
        t: float,
        out: Out,
    ) -> None:
        """An agent's device rings for the call: the screen-pop moment (once per ring)."""
        call_id = call.call_id
        if agent in call.ringing or agent in call.connected:
            return
        a = self._agent(agent, t)
        if call_id in a.talking:
            return
        call.ringing[agent] = t
        if agent not in call.agents_rung:
            call.agents_rung.append(agent)
        a.ringing.add(call_id)
        if device and a.device is None:
            a.device = device
        out.append(
            CallRinging(
                at=t,
                call_id=call_id,
                agent=agent,
                device=device,
                channel=channel,
                member_name=member_name or a.member_name,
                queue=call.queue,
                direction=call.direction,
                external_number=call.external_number,
                external_number_raw=call.external_raw,
                caller_name=call.caller_name,
                did=call.did,
                variables=dict(call.variables),
            )
        )
        self._touch(a, t, out)

    def _unring(self, call: Call, agent: str, t: float, out: Out) -> None:
        if call.ringing.pop(agent, None) is None:
            return
        a = self._agents.get(agent)
        if a is not None:
            a.ringing.discard(call.call_id)
            self._touch(a, t, out)

    def _agent_busy(self, call: Call, agent: str, t: float, out: Out) -> None:
        """The agent's device picked up (it may not be connected to the other party yet)."""
        call.ringing.pop(agent, None)
        a = self._agent(agent, t)
        call_id = call.call_id
        a.ringing.discard(call_id)
        a.talking.add(call_id)
        self._touch(a, t, out)

    def _answered(
        self,
        call: Call,
        agent: str | None,
        device: str | None,
        channel: str | None,
        t: float,
        out: Out,
    ) -> None:
        """The call got connected to ``agent`` (or, without agents, to anyone)."""
        if agent is not None:
            if agent in call.connected:
                return
            call.connected[agent] = t
            if agent not in call.agents_talked:
                call.agents_talked.append(agent)
        first = call.answered_at is None
        if first:
            call.answered_at = t
            call.answered_by = agent
        elif agent is None:
            return
        out.append(
            CallAnswered(
                at=t,
                call_id=call.call_id,
                agent=agent,
                device=device,
                channel=channel,
                queue=call.queue,
                direction=call.direction,
                external_number=call.external_number,
                did=call.did,
                wait_seconds=call.wait_seconds,
                first=first,
            )
        )
        if agent is not None:
            self._agent_busy(call, agent, t, out)

    def _agent_leaves(self, agent: str, call: Call, t: float, out: Out) -> None:
        """The agent has nothing left in this call: stop ringing/talking, maybe wrap up."""
        call.ringing.pop(agent, None)
        call.connected.pop(agent, None)
        a = self._agents.get(agent)
        if a is None:
            return
        call_id = call.call_id
        was_busy = call_id in a.talking
        a.ringing.discard(call_id)
        a.talking.discard(call_id)
        queue = call.wrapup_queue.pop(agent, None)
        if was_busy and queue is not None:
            self._start_wrapup(a, queue, t)
        self._touch(a, t, out)

    def _start_wrapup(self, a: AgentState, queue: str, t: float) -> None:
        seconds = a.queue_wrapup.get(queue) or self.config.wrapup_for(queue)
        if seconds > 0:
            until = t + seconds
            a.wrapup_until = until
            self._wrapping[a.agent] = until
            if until < self._next_wrapup:
                self._next_wrapup = until

    def _expire_wrapups(self, t: float, out: Out) -> None:
        due = [aid for aid, until in self._wrapping.items() if until <= t]
        for aid in due:
            del self._wrapping[aid]
            a = self._agents.get(aid)
            if a is not None:
                self._touch(a, t, out)
        self._next_wrapup = min(self._wrapping.values(), default=math.inf)

    def _agent(self, agent: str, t: float) -> AgentState:
        a = self._agents.get(agent)
        if a is None:
            a = AgentState(agent, t)
            self._agents[agent] = a
        return a

    def _touch(self, a: AgentState, t: float, out: Out) -> None:
        """Recompute the agent's state; emit ``agent.state`` when something visible changed."""
        state = a.compute(t)
        reason = a.pause_reason()
        queues = tuple(sorted(a.queues))
        key = (state, reason, queues, a.paused_queues())
        if key == a.last_key:
            return
        previous = a.state
        a.last_key = key
        a.state = state
        if state != previous:
            a.since = t
        self._dirty.update(queues)
        out.append(
            AgentStateChanged(
                at=t,
                agent=a.agent,
                state=state,
                previous=previous,
                pause_reason=reason,
                queues=queues,
                paused_queues=key[3],
                device=a.device,
                member_name=a.member_name,
                call_id=a.current_call(),
            )
        )

    def _agent_for_device(self, device: str) -> str | None:
        cache = self._agent_cache
        agent = cache.get(device, _MISSING)
        if agent is _MISSING:
            agent = self._resolve_device(device)
            if len(cache) > 4096:
                cache.clear()
            cache[device] = agent
        return agent  # type: ignore[return-value]

    def _resolve_device(self, device: str) -> str | None:
        try:
            agent = self.config.agent_for_device(device)
        except Exception:
            agent = None
        if agent is None:
            agent = self._agent_by_device.get(device)
        return agent

    def _register_member(self, interface: str, state_interface: str | None) -> str:
        known = self._members.get(interface)
        if known is not None and (state_interface is None or known[1] == state_interface):
            return known[0]
        agent: str | None = None
        for dev in (state_interface, interface):
            if dev:
                try:
                    agent = self.config.agent_for_device(dev)
                except Exception:
                    agent = None
                if agent is not None:
                    break
        if agent is None:
            agent = known[0] if known is not None else (state_interface or interface)
        si = state_interface or (known[1] if known is not None else None)
        self._members[interface] = (agent, si)
        self._agent_cache.clear()
        if si:
            self._agent_by_device[si] = agent
            # Channels that appeared before we knew this member get their agent now.
            for ch in self._channels.values():
                if ch.agent is None and ch.device == si:
                    call = self._calls.get(ch.call_id)
                    if call is not None:
                        self._attach_agent(ch, call, agent)
        return agent

    def _member_agent(self, interface: str | None, dest_channel: str | None) -> str | None:
        """Agent of a queue member named in AgentCalled/Connect/... events."""
        if interface:
            known = self._members.get(interface)
            if known is not None:
                return known[0]
        device = device_of(dest_channel) if dest_channel else None
        for dev in (interface, device):
            if dev:
                agent = self._agent_for_device(dev)
                if agent is not None:
                    return agent
        return device or interface

    def _queue(self, name: str) -> QueueState:
        q = self._queues.get(name)
        if q is None:
            q = QueueState(name, self.config.service_level_for(name))
            self._queues[name] = q
        return q

    def _queue_stats(self, q: QueueState, t: float) -> Any:
        available = paused = busy = 0
        agents = self._agents
        for aid in set(q.members.values()):
            a = agents.get(aid)
            if a is None:
                continue
            state = a.state
            if state in (ON_CALL, RINGING, WRAP_UP):
                busy += 1
            elif a.queues.get(q.name) is not None:
                paused += 1
            elif state == AVAILABLE:
                available += 1
        return q.stats(t, len(set(q.members.values())), available, paused, busy)

    def _flush_stats(self, t: float, out: Out) -> None:
        dirty = self._dirty
        for name in sorted(dirty):
            q = self._queues.get(name)
            if q is None:
                continue
            stats = self._queue_stats(q, t)
            key = (
                stats.waiting,
                stats.offered,
                stats.answered,
                stats.abandoned,
                stats.completed,
                stats.members,
                stats.available,
                stats.paused,
                stats.busy,
            )
            if self._last_stats.get(name) == key:
                continue
            self._last_stats[name] = key
            out.append(stats)
        dirty.clear()

    # --- channel event handlers -----------------------------------------------------------

    def _on_newchannel(self, get: Getter, t: float, out: Out) -> None:
        self._chan(get, t, out)

    def _on_newstate(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out)
        if ch is None:
            return
        state = get("channelstatedesc")
        ch.state = state
        agent = ch.agent
        if agent is None:
            return
        call = self._calls.get(ch.call_id)
        if call is None:
            return
        if state == "Ringing":
            self._ring(call, agent, ch.device, ch.name, None, t, out)
        elif state == "Up":
            self._agent_busy(call, agent, t, out)

    def _on_newexten(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out)
        if ch is None:
            return
        call = self._calls.get(ch.call_id)
        if call is None or call.direction in _FINAL_DIRECTIONS:
            return
        context = get("context")
        if context:
            self._classify(call, ch, context, get("exten") or "", t, out)

    def _on_newcallerid(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out)
        if ch is None:
            return
        ch.caller_num = _known(get("calleridnum"))
        ch.caller_name = _known(get("calleridname"))
        call = self._calls.get(ch.call_id)
        if call is None or call.customer_uid != ch.uid or call.direction != INBOUND:
            return
        changes: dict[str, Any] = {}
        if self._set_external(call, ch.caller_num):
            changes["external_number"] = call.external_number
            changes["external_number_raw"] = call.external_raw
        if ch.caller_name is not None and ch.caller_name != call.caller_name:
            call.caller_name = ch.caller_name
            changes["caller_name"] = ch.caller_name
        if changes:
            out.append(CallUpdated(at=t, call_id=call.call_id, changes=changes))

    def _on_varset(self, get: Getter, t: float, out: Out) -> None:
        var = get("variable")
        if not var:
            return
        if var[0] == "_":
            var = var.lstrip("_")
        kind = self._var_kinds.get(var)
        if kind is None:
            if not var.startswith(self._var_prefixes):
                return
            kind = _VAR_KEEP
        ch = self._chan(get, t, out)
        if ch is None:
            return
        call = self._calls.get(ch.call_id)
        if call is None:
            return
        value = get("value") or ""
        if kind == _VAR_RECORDING:
            if value and value != call.recording:
                call.recording = value
                out.append(CallUpdated(at=t, call_id=call.call_id, changes={"recording": value}))
        elif kind == _VAR_DID:
            if value and call.did is None:
                call.did = value
                out.append(CallUpdated(at=t, call_id=call.call_id, changes={"did": value}))
        elif call.variables.get(var) != value:
            call.variables[var] = value
            out.append(
                CallUpdated(at=t, call_id=call.call_id, changes={"variables": dict(call.variables)})
            )

    def _on_rename(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out, create=False)
        new_name = get("newname")
        if ch is not None and new_name:
            ch.name = new_name

    def _on_hangup(self, get: Getter, t: float, out: Out) -> None:
        uid = get("uniqueid")
        ch = self._channels.pop(uid, None) if uid else None
        if ch is None or uid is None:
            self.counters["late"] += 1
            return
        self._hungup.add(uid)
        self._drop_bridge(ch)
        call = self._calls.get(ch.call_id)
        if call is None:
            return
        cause = _int(get("cause"))
        if cause is not None:
            if (cause != 0 and uid == call.customer_uid) or not call.cause:
                if cause != 0 or call.cause is None:
                    call.cause = cause
                    call.cause_text = get("cause-txt")
        self._drop_waiting(ch, call, t, out, infer_abandon=True)
        call.channels.discard(uid)
        self._detach_agent(ch, call, t, out)
        if not call.channels:
            self._end_call(call, t, out)

    def _dial_parties(
        self, get: Getter, t: float, out: Out
    ) -> tuple[Channel | None, Call | None, Channel | None, str | None, str]:
        """(caller channel, call, dialled channel, its uid, its name) of a Dial* event."""
        dest_uid = get("destuniqueid")
        dest_name = get("destchannel") or ""
        src: Channel | None = None
        if get("uniqueid"):
            src = self._chan(get, t, out)
            dest = self._channels.get(dest_uid) if dest_uid else None
        elif dest_uid:
            # Originate: nobody dials, the dialled channel is the subject of the event.
            dest = self._channels.get(dest_uid)
            if dest is None:
                dest = self._new_channel(
                    dest_uid, dest_name, get("destlinkedid") or dest_uid, t, out, None
                )
        else:
            return None, None, None, None, dest_name
        holder = src if src is not None else dest
        call = self._calls.get(holder.call_id) if holder is not None else None
        return src, call, dest, dest_uid, dest_name

    def _dest_agent(
        self, call: Call, dest: Channel | None, dest_uid: str | None, dest_name: str
    ) -> str | None:
        if dest is not None:
            return dest.agent
        if dest_uid and dest_uid in call.ring_targets:
            return call.ring_targets[dest_uid]
        return self._agent_for_device(device_of(dest_name)) if dest_name else None

    def _dial_ring(self, get: Getter, t: float, out: Out) -> None:
        _, call, dest, dest_uid, dest_name = self._dial_parties(get, t, out)
        if call is None:
            return
        agent = self._dest_agent(call, dest, dest_uid, dest_name)
        if agent is None:
            return
        if dest is None and dest_uid:
            call.ring_targets[dest_uid] = agent
        device = device_of(dest_name) if dest_name else None
        self._ring(call, agent, device, dest_name or None, None, t, out)

    def _on_dialbegin(self, get: Getter, t: float, out: Out) -> None:
        self._dial_ring(get, t, out)

    def _on_dialstate(self, get: Getter, t: float, out: Out) -> None:
        if get("dialstatus") == "RINGING":
            self._dial_ring(get, t, out)

    def _on_dialend(self, get: Getter, t: float, out: Out) -> None:
        src, call, dest, dest_uid, dest_name = self._dial_parties(get, t, out)
        if call is None:
            return
        agent = self._dest_agent(call, dest, dest_uid, dest_name)
        if get("dialstatus") == "ANSWER":
            if src is not None and src.waiting_in:
                for queue in src.waiting_in:
                    if call.queue_outcomes.get(queue) in ("waiting", "left"):
                        call.queue_outcomes[queue] = "connecting"
            if agent is not None:
                self._agent_busy(call, agent, t, out)
        elif agent is not None:
            self._unring(call, agent, t, out)

    def _on_bridgeenter(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out)
        bid = get("bridgeuniqueid")
        if ch is None or not bid:
            return
        self._join_bridge(ch, bid)
        self._bridge_check(bid, t, out)

    def _join_bridge(self, ch: Channel, bid: str) -> None:
        if ch.bridge != bid:
            self._drop_bridge(ch)
            ch.bridge = bid
        members = self._bridges.get(bid)
        if members is None:
            self._bridges[bid] = {ch.uid}
        else:
            members.add(ch.uid)

    def _bridge_check(self, bid: str, t: float, out: Out) -> None:
        """Two or more channels of one call share a bridge: the call is connected."""
        members = self._bridges.get(bid)
        if members is None or len(members) < 2:
            return
        by_call: dict[str, list[Channel]] = {}
        channels = self._channels
        for uid in members:
            ch = channels.get(uid)
            if ch is not None:
                by_call.setdefault(ch.call_id, []).append(ch)
        for call_id, chans in by_call.items():
            if len(chans) < 2:
                continue
            call = self._calls.get(call_id)
            if call is None:
                continue
            fresh = [c for c in chans if c.agent is not None and c.agent not in call.connected]
            if not fresh:
                if call.answered_at is None:
                    self._answered(call, None, None, None, t, out)
                continue
            fresh.sort(key=lambda c: c.uid)
            if call.answered_at is None:
                # The answer: the agent that was rung (not the caller side of an internal call).
                announce = [c for c in fresh if c.agent in call.agents_rung] or fresh[:1]
            else:
                announce = fresh  # joining an answered call: transfer target, conference
            for c in announce:
                self._answered(call, c.agent, c.device, c.name, t, out)
            for c in fresh:
                agent = c.agent
                if agent is not None and agent not in call.connected:
                    call.connected[agent] = t  # the caller side of an internal call, say
                    if agent not in call.agents_talked:
                        call.agents_talked.append(agent)
                    self._agent_busy(call, agent, t, out)

    def _on_bridgeleave(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out, create=False)
        bid = get("bridgeuniqueid")
        uid = get("uniqueid")
        if bid and uid:
            members = self._bridges.get(bid)
            if members is not None:
                members.discard(uid)
                if not members:
                    del self._bridges[bid]
        if ch is not None and ch.bridge == bid:
            ch.bridge = None

    def _on_bridgedestroy(self, get: Getter, t: float, out: Out) -> None:
        bid = get("bridgeuniqueid")
        members = self._bridges.pop(bid, None) if bid else None
        for uid in members or ():
            ch = self._channels.get(uid)
            if ch is not None and ch.bridge == bid:
                ch.bridge = None

    def _on_bridgemerge(self, get: Getter, t: float, out: Out) -> None:
        src = get("frombridgeuniqueid")
        dst = get("tobridgeuniqueid")
        if not src or not dst or src == dst:
            return
        moved = self._bridges.pop(src, None)
        if not moved:
            return
        target = self._bridges.setdefault(dst, set())
        for uid in moved:
            ch = self._channels.get(uid)
            if ch is not None:
                ch.bridge = dst
                target.add(uid)
        self._bridge_check(dst, t, out)

    def _on_hold(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out)
        call = self._calls.get(ch.call_id) if ch is not None else None
        if ch is None or call is None or call.hold_started is not None:
            return
        call.hold_started = t
        out.append(CallHeld(at=t, call_id=call.call_id, channel=ch.name, agent=ch.agent))

    def _on_unhold(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out)
        call = self._calls.get(ch.call_id) if ch is not None else None
        if ch is None or call is None or call.hold_started is None:
            return
        held = max(0.0, t - call.hold_started)
        call.hold_seconds += held
        call.hold_started = None
        out.append(
            CallUnheld(
                at=t, call_id=call.call_id, channel=ch.name, agent=ch.agent, held_seconds=held
            )
        )

    def _mixmonitor(self, get: Getter, t: float, out: Out, active: bool) -> None:
        ch = self._chan(get, t, out)
        call = self._calls.get(ch.call_id) if ch is not None else None
        if call is None or call.recording_active == active:
            return
        call.recording_active = active
        out.append(
            CallUpdated(
                at=t,
                call_id=call.call_id,
                changes={"recording_active": active, "recording": call.recording},
            )
        )

    def _on_mixmonitor_start(self, get: Getter, t: float, out: Out) -> None:
        self._mixmonitor(get, t, out, True)

    def _on_mixmonitor_stop(self, get: Getter, t: float, out: Out) -> None:
        self._mixmonitor(get, t, out, False)

    def _on_originateresponse(self, get: Getter, t: float, out: Out) -> None:
        # Never creates state: a failed originate reports channels that are already gone.
        uid = get("uniqueid")
        ch = self._channels.get(uid) if uid else None
        call = self._calls.get(ch.call_id) if ch is not None else None
        if ch is None or call is None:
            return
        context = get("context") or None
        exten = get("exten") or None
        call.originate = {
            "action_id": get("actionid"),
            "response": get("response"),
            "reason": get("reason"),
            "channel": get("channel"),
            "context": context,
            "exten": exten,
        }
        out.append(
            CallUpdated(at=t, call_id=call.call_id, changes={"originate": dict(call.originate)})
        )
        if context and call.direction not in _FINAL_DIRECTIONS:
            if ch.caller_num is None:
                ch.caller_num = _known(get("calleridnum"))
                ch.caller_name = _known(get("calleridname"))
            self._classify(call, ch, context, exten or "", t, out)

    def _on_transfer_common(
        self,
        call: Call,
        kind: str,
        result: str | None,
        by: Channel | None,
        target: str | None,
        to_agent: str | None,
        consult: str | None,
        t: float,
        out: Out,
    ) -> None:
        record: dict[str, Any] = {
            "kind": kind,
            "at": t,
            "result": result,
            "by_agent": by.agent if by is not None else None,
            "target": target,
            "to_agent": to_agent,
        }
        call.transfers.append(record)
        out.append(
            CallTransferred(
                at=t,
                call_id=call.call_id,
                kind=kind,
                result=result,
                by_agent=record["by_agent"],
                by_channel=by.name if by is not None else None,
                target=target,
                to_agent=to_agent,
                consult_call_id=consult,
            )
        )

    def _call_of(self, uid: str | None, linkedid: str | None) -> tuple[Channel | None, Call | None]:
        ch = self._channels.get(uid) if uid else None
        if ch is not None:
            return ch, self._calls.get(ch.call_id)
        if linkedid:
            return None, self._calls.get(self._resolve(linkedid))
        return None, None

    def _on_blindtransfer(self, get: Getter, t: float, out: Out) -> None:
        transferer, ter_call = self._call_of(
            get("transfereruniqueid"), get("transfererlinkedid")
        )
        _, tee_call = self._call_of(get("transfereeuniqueid"), get("transfereelinkedid"))
        call = tee_call or ter_call
        if call is None:
            return
        exten = get("extension")
        context = get("context")
        target = f"{exten}@{context}" if exten and context else exten
        self._on_transfer_common(
            call, "blind", get("result"), transferer, target, None, None, t, out
        )

    def _on_attendedtransfer(self, get: Getter, t: float, out: Out) -> None:
        orig, orig_call = self._call_of(
            get("origtransfereruniqueid"), get("origtransfererlinkedid")
        )
        second, second_call = self._call_of(
            get("secondtransfereruniqueid"), get("secondtransfererlinkedid")
        )
        _, tee_call = self._call_of(get("transfereeuniqueid"), get("transfereelinkedid"))
        target_ch, target_call = self._call_of(
            get("transfertargetuniqueid"), get("transfertargetlinkedid")
        )
        keep = tee_call or orig_call or second_call
        if keep is None:
            return
        other = None
        for candidate in (orig_call, second_call, target_call):
            if candidate is not None and candidate is not keep:
                other = candidate
                break
        result = get("result")
        to_agent = target_ch.agent if target_ch is not None else None
        by = orig if orig is not None and orig.agent is not None else (second or orig)
        self._on_transfer_common(
            keep,
            "attended",
            result,
            by,
            None,
            to_agent,
            other.call_id if other is not None else None,
            t,
            out,
        )
        if other is not None and (result or "Success") == "Success":
            # Merge the consultation call into the transferred one; Asterisk will also give
            # its channels the older Linkedid, and the alias keeps them here either way.
            keep_id = keep.call_id
            for uid in list(other.channels):
                ch = self._channels.get(uid)
                if ch is not None and other.call_id in self._calls:
                    self._move_channel(ch, keep_id, t, out)

    # --- queue event handlers -------------------------------------------------------------

    def _queue_seen(self, call: Call, q: QueueState) -> str:
        """Outcome of the call in this queue, counting it as offered the first time."""
        outcome = call.queue_outcomes.get(q.name)
        if outcome is None:
            q.offered += 1
            outcome = call.queue_outcomes[q.name] = "waiting"
            if call.queue is None:
                call.queue = q.name
            self._dirty.add(q.name)
        return outcome

    def _count_abandon(self, call: Call, q: QueueState, wait: float | None) -> None:
        q.abandoned += 1
        call.queue_outcomes[q.name] = "abandoned"
        if wait is not None:
            q.total_abandon_wait += wait
            if call.wait_seconds is None:
                call.wait_seconds = wait
        self._dirty.add(q.name)

    def _caller(self, get: Getter, t: float, out: Out) -> tuple[Channel, Call, QueueState] | None:
        ch = self._chan(get, t, out)
        queue = get("queue")
        if ch is None or not queue:
            return None
        call = self._calls.get(ch.call_id)
        if call is None:
            return None
        return ch, call, self._queue(queue)

    def _on_queuecallerjoin(self, get: Getter, t: float, out: Out) -> None:
        found = self._caller(get, t, out)
        if found is None:
            return
        ch, call, q = found
        outcome = call.queue_outcomes.get(q.name)
        if outcome is not None and outcome != "waiting":
            del call.queue_outcomes[q.name]  # back in the queue: a new offer
        self._queue_seen(call, q)
        q.waiting[ch.uid] = (t, call.call_id)
        if ch.waiting_in is None:
            ch.waiting_in = {q.name}
        else:
            ch.waiting_in.add(q.name)
        if call.direction in (None, INBOUND) and call.external_raw is None:
            self._set_external(call, get("calleridnum"))
            if call.caller_name is None:
                call.caller_name = _known(get("calleridname"))
        self._dirty.add(q.name)
        out.append(
            QueueCallerJoined(
                at=t,
                queue=q.name,
                call_id=call.call_id,
                channel=ch.name,
                position=_int(get("position")),
                count=_int(get("count")),
                external_number=call.external_number,
                caller_name=call.caller_name,
            )
        )

    def _on_queuecallerleave(self, get: Getter, t: float, out: Out) -> None:
        found = self._caller(get, t, out)
        if found is None:
            return
        ch, call, q = found
        outcome = self._queue_seen(call, q)
        entry = q.waiting.pop(ch.uid, None)
        if ch.waiting_in is not None:
            ch.waiting_in.discard(q.name)
        if outcome == "abandoned":
            reason = "abandoned"
        elif outcome in _ANSWERED_OUTCOMES:
            reason = "answered"
        else:
            reason = "exited"
            call.queue_outcomes[q.name] = "left"
        wait = self._since(entry[0] if entry is not None else None, t)
        if wait is None:
            wait = call.wait_seconds
        self._dirty.add(q.name)
        out.append(
            QueueCallerLeft(
                at=t,
                queue=q.name,
                call_id=call.call_id,
                channel=ch.name,
                position=_int(get("position")),
                count=_int(get("count")),
                wait_seconds=wait,
                reason=reason,
            )
        )

    def _on_queuecallerabandon(self, get: Getter, t: float, out: Out) -> None:
        found = self._caller(get, t, out)
        if found is None:
            return
        ch, call, q = found
        outcome = self._queue_seen(call, q)
        if outcome not in ("waiting", "left"):
            return
        entry = q.waiting.pop(ch.uid, None)
        if ch.waiting_in is not None:
            ch.waiting_in.discard(q.name)
        hold = _float(get("holdtime"))
        wait = hold if hold is not None else self._since(entry[0] if entry else None, t)
        self._count_abandon(call, q, wait)
        out.append(
            QueueCallerAbandoned(
                at=t,
                queue=q.name,
                call_id=call.call_id,
                channel=ch.name,
                position=_int(get("position")),
                original_position=_int(get("originalposition")),
                wait_seconds=wait,
            )
        )

    def _member_event(
        self, get: Getter, t: float, out: Out
    ) -> tuple[Channel, Call, QueueState, str, Channel | None, str] | None:
        """(caller, call, queue, agent, dialled channel, its name) of an Agent* event."""
        found = self._caller(get, t, out)
        if found is None:
            return None
        ch, call, q = found
        dest_uid = get("destuniqueid")
        dest_name = get("destchannel") or ""
        agent = self._member_agent(get("interface"), dest_name)
        if agent is None:
            return None
        dest = self._channels.get(dest_uid) if dest_uid else None
        if dest is not None:
            dest_call = self._calls.get(dest.call_id)
            if dest.agent != agent and dest_call is not None:
                self._attach_agent(dest, dest_call, agent)
        elif dest_uid:
            call.ring_targets[dest_uid] = agent
        return ch, call, q, agent, dest, dest_name

    def _on_agentcalled(self, get: Getter, t: float, out: Out) -> None:
        found = self._member_event(get, t, out)
        if found is None:
            return
        _, call, q, agent, _, dest_name = found
        self._queue_seen(call, q)
        a = self._agent(agent, t)
        name = get("membername")
        if name and a.member_name is None:
            a.member_name = name
        device = device_of(dest_name) if dest_name else None
        self._ring(call, agent, device, dest_name or None, name, t, out)

    def _on_agentringnoanswer(self, get: Getter, t: float, out: Out) -> None:
        found = self._member_event(get, t, out)
        if found is None:
            return
        _, call, _, agent, _, _ = found
        self._unring(call, agent, t, out)

    def _on_agentconnect(self, get: Getter, t: float, out: Out) -> None:
        found = self._member_event(get, t, out)
        if found is None:
            return
        ch, call, q, agent, _, dest_name = found
        outcome = self._queue_seen(call, q)
        if outcome in _OPEN_OUTCOMES:
            q.answered += 1
            call.queue_outcomes[q.name] = "answered"
            entry = q.waiting.pop(ch.uid, None)
            if ch.waiting_in is not None:
                ch.waiting_in.discard(q.name)
            hold = _float(get("holdtime"))
            wait = hold if hold is not None else self._since(entry[0] if entry else None, t)
            if wait is not None:
                q.total_wait += wait
                if wait <= q.sl_seconds:
                    q.answered_within_sl += 1
                call.wait_seconds = wait
            call.wrapup_queue[agent] = q.name
            self._dirty.add(q.name)
        device = device_of(dest_name) if dest_name else None
        self._answered(call, agent, device, dest_name or None, t, out)

    def _on_agentcomplete(self, get: Getter, t: float, out: Out) -> None:
        found = self._member_event(get, t, out)
        if found is None:
            return
        _, call, q, agent, _, _ = found
        if call.queue_outcomes.get(q.name) == "answered":
            call.queue_outcomes[q.name] = "completed"
            q.completed += 1
            talk = _float(get("talktime"))
            if talk is not None:
                q.total_talk += talk
                call.talk_reported = (call.talk_reported or 0.0) + talk
            self._dirty.add(q.name)
        # The agent is done with this call now; wrap-up starts here, not at hangup.
        a = self._agents.get(agent)
        if a is not None and call.call_id in a.talking:
            a.talking.discard(call.call_id)
            queue = call.wrapup_queue.pop(agent, q.name)
            self._start_wrapup(a, queue, t)
            self._touch(a, t, out)

    def _member_fields(self, get: Getter) -> tuple[str, str, str | None, str | None] | None:
        queue = get("queue")
        interface = get("interface") or get("location")
        if not queue or not interface:
            return None
        return queue, interface, get("stateinterface") or None, get("membername") or get("name")

    def _on_member(self, get: Getter, t: float, out: Out) -> None:
        fields = self._member_fields(get)
        if fields is None:
            return
        queue, interface, state_interface, name = fields
        agent = self._register_member(interface, state_interface)
        q = self._queue(queue)
        a = self._agent(agent, t)
        if name:
            a.member_name = name
        if state_interface:
            a.device = state_interface
        if q.members.get(interface) != agent:
            q.members[interface] = agent
            self._dirty.add(queue)
        paused = get("paused")
        if paused is not None:
            a.queues[queue] = (get("pausedreason") or "") if paused == "1" else None
        elif queue not in a.queues:
            a.queues[queue] = None
        wrapup = _float(get("wrapuptime"))
        if wrapup:
            a.queue_wrapup[queue] = wrapup
        else:
            a.queue_wrapup.pop(queue, None)
        device_state = device_state_from_queue_status(get("status"))
        if device_state is not None:
            a.device_state = device_state
        self._touch(a, t, out)

    def _on_member_removed(self, get: Getter, t: float, out: Out) -> None:
        fields = self._member_fields(get)
        if fields is None:
            return
        queue, interface, state_interface, _ = fields
        agent = self._register_member(interface, state_interface)
        q = self._queue(queue)
        q.members.pop(interface, None)
        self._dirty.add(queue)
        a = self._agents.get(agent)
        if a is not None:
            a.queues.pop(queue, None)
            a.queue_wrapup.pop(queue, None)
            self._touch(a, t, out)

    def _on_queueparams(self, get: Getter, t: float, out: Out) -> None:
        queue = get("queue")
        if not queue:
            return
        q = self._queue(queue)
        q.strategy = get("strategy") or q.strategy
        for key in ("Calls", "Holdtime", "TalkTime", "Completed", "Abandoned", "ServiceLevel"):
            value = get(key.lower())
            if value is not None:
                q.pbx[key] = value
        perf = get("servicelevelperf")
        if perf is not None:
            q.pbx["ServicelevelPerf"] = perf

    def _on_queueentry(self, get: Getter, t: float, out: Out) -> None:
        # QueueEntry has no Linkedid: only channels we already know are taken.
        uid = get("uniqueid")
        queue = get("queue")
        ch = self._channels.get(uid) if uid else None
        call = self._calls.get(ch.call_id) if ch is not None else None
        if ch is None or call is None or not queue:
            return
        q = self._queue(queue)
        self._queue_seen(call, q)
        if ch.uid not in q.waiting:
            wait = _float(get("wait")) or 0.0
            q.waiting[ch.uid] = (t - wait, call.call_id)
            if ch.waiting_in is None:
                ch.waiting_in = {queue}
            else:
                ch.waiting_in.add(queue)
            self._dirty.add(queue)

    def _apply_queue_status(self, items: Iterable[AmiMessage], t: float, out: Out) -> None:
        listed_queues: set[str] = set()
        members: dict[str, set[str]] = {}
        entries: dict[str, set[str]] = {}
        for msg in items:
            get = _getter(msg)
            event = get("event")
            queue = get("queue")
            if not queue:
                continue
            if event == "QueueParams":
                listed_queues.add(queue)
                self._on_queueparams(get, t, out)
            elif event == "QueueMember":
                listed_queues.add(queue)
                interface = get("interface") or get("location")
                if interface:
                    members.setdefault(queue, set()).add(interface)
                self._on_member(get, t, out)
            elif event == "QueueEntry":
                listed_queues.add(queue)
                uid = get("uniqueid")
                if uid:
                    entries.setdefault(queue, set()).add(uid)
                self._on_queueentry(get, t, out)
        for queue in listed_queues:
            q = self._queue(queue)
            seen = members.get(queue, set())
            for interface in [i for i in q.members if i not in seen]:
                agent = q.members.pop(interface)
                a = self._agents.get(agent)
                if a is not None:
                    a.queues.pop(queue, None)
                    self._touch(a, t, out)
            waiting = entries.get(queue, set())
            for uid in [u for u in q.waiting if u not in waiting]:
                del q.waiting[uid]
                ch = self._channels.get(uid)
                if ch is not None and ch.waiting_in is not None:
                    ch.waiting_in.discard(queue)
            self._dirty.add(queue)

    # --- agents, devices, PBX -------------------------------------------------------------

    def _on_devicestate(self, get: Getter, t: float, out: Out) -> None:
        device = get("device")
        if not device:
            return
        agent = self._agent_for_device(device)
        if agent is None:
            return
        self._device_state(agent, device, get("state"), t, out)

    def _device_state(
        self, agent: str, device: str, state: str | None, t: float, out: Out
    ) -> None:
        a = self._agent(agent, t)
        if a.device is None:
            a.device = device
        if state != a.device_state:
            a.device_state = state
            self._touch(a, t, out)

    def _on_extensionstatus(self, get: Getter, t: float, out: Out) -> None:
        hint = get("hint") or ""
        status = get("status")
        if not hint or status not in _EXTENSION_STATUS:
            return
        state = _EXTENSION_STATUS[status]
        for part in hint.split("&"):
            device = part.strip()
            agent = self._agent_for_device(device) if device else None
            if agent is not None:
                self._device_state(agent, device, state, t, out)
                return

    def _on_fullybooted(self, get: Getter, t: float, out: Out) -> None:
        uptime = _float(get("uptime"))
        if uptime is None:
            return
        boot = t - uptime
        if self._boot is not None and boot > self._boot + self.config.restart_tolerance_seconds:
            closed = self._close_all(t, PBX_RESTART, out)
            out.append(
                PbxResynced(
                    at=t,
                    reason=PBX_RESTART,
                    closed_calls=tuple(closed),
                    queues=tuple(sorted(self._queues)),
                    agents=len(self._agents),
                )
            )
        self._boot = boot

    def _on_listed_channel(self, get: Getter, t: float, out: Out) -> None:
        self._listed_channel(get, t, out)
        bid = get("bridgeid")
        if bid:
            self._bridge_check(bid, t, out)

    def _listed_channel(self, get: Getter, t: float, out: Out) -> Channel | None:
        """A CoreShowChannel/Status list item: create or refresh the channel."""
        uid = get("uniqueid")
        existed = uid in self._channels
        ch = self._chan(get, t, out)
        if ch is None:
            return None
        call = self._calls.get(ch.call_id)
        if call is None:
            return ch
        if not existed:
            age = _duration(get("duration")) or _float(get("seconds"))
            if age is not None:
                call.started_at = min(call.started_at, t - age)
        state = get("channelstatedesc")
        if state:
            ch.state = state
        bid = get("bridgeid")
        if bid:
            self._join_bridge(ch, bid)
        elif ch.bridge is not None:
            self._drop_bridge(ch)
        context = get("context")
        if context and call.direction not in _FINAL_DIRECTIONS:
            self._classify(call, ch, context, get("exten") or "", t, out)
        if ch.agent is not None:
            if state == "Up":
                self._agent_busy(call, ch.agent, t, out)
            elif state == "Ringing":
                self._ring(call, ch.agent, ch.device, ch.name, None, t, out)
        return ch
