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

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from cti.ami_message import AmiMessage
from cti.domain_events import DomainEvent, PbxResynced, QueueStats

from .call_events import _CallEvents
from .config import CallStateConfig, leg_of
from .queue_events import _QueueEvents
from .support import (
    PBX_RESTART,
    VANISHED,
    Getter,
    Handler,
    Out,
    getter,
)

__all__ = ["PBX_RESTART", "VANISHED", "CallStateMachine"]


class CallStateMachine(_CallEvents, _QueueEvents):
    """Calls, queues and agents of one PBX, rebuilt from its AMI event stream."""

    def __init__(self, config: CallStateConfig | None = None) -> None:
        super().__init__(config)
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
            "MixMonitorMute": self._on_mixmonitor_mute,
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

    @property
    def now(self) -> float:
        """The latest event time seen."""
        return self._now

    def feed(self, msg: AmiMessage, now: float | None = None) -> list[DomainEvent]:
        """Apply one AMI message; return the domain events it causes (often none)."""
        get = getter(msg)
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
                get = getter(msg)
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
            # Device states from before the link loss are stale: the lists replace them.
            for a in self._agents.values():
                a.device_state = None
            self._apply_queue_status(queue_status, t, out)
            for msg in device_states:
                get = getter(msg)
                device = get("device")
                owner = self._agent_for_device(device) if device else None
                if device and owner is not None:
                    self._agent(owner, t).device_state = get("state")
            for a in list(self._agents.values()):
                self._touch(a, t, out)
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
                open_call_ids=tuple(self._calls),
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

    def agent_states(self, now: float) -> list[DomainEvent]:
        """Every agent's current state as ``agent.state`` events (``previous`` is the state
        itself: nothing changed). ``agent.state`` only says what changes, so a gateway
        instance that starts after the holder of this PBX's link asks for these
        (tamas/pbx_links.py) to know who is available without waiting for each change."""
        return [
            replace(self._agent_event(a, a.last_key, a.state, now), since=a.since)
            for a in self._agents.values()
            if a.last_key is not None
        ]

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready picture of calls, queues and agents (supervisor view, debugging)."""
        t = self._now if now is None else now
        calls = []
        for call in self._calls.values():
            view = call.to_dict(t)
            # Both halves of a Local channel pair are one leg of the call.
            names = (self._channels[uid].name for uid in call.channels if uid in self._channels)
            view["legs"] = sorted({leg_of(name) for name in names})
            calls.append(view)
        return {
            "at": t,
            "calls": calls,
            "queues": {
                name: q.to_dict(self._queue_stats(q, t), t) for name, q in self._queues.items()
            },
            "agents": {aid: a.to_dict(t) for aid, a in self._agents.items()},
            "counters": dict(self.counters),
        }

    @property
    def handled_events(self) -> frozenset[str]:
        """AMI event names the machine acts on (everything else is counted as ignored)."""
        return frozenset(self._dispatch)

    def memory(self) -> dict[str, int]:
        """Sizes of every table, to watch that state stays flat over a long stream."""
        return {
            "channels": len(self._channels),
            "calls": len(self._calls),
            "bridges": len(self._bridges),
            "agents": len(self._agents),
            "queues": len(self._queues),
            "recent_ended": len(self._ended),
            "recent_hungup": len(self._hungup),
            "aliases": len(self._aliases),
            "agent_cache": len(self._agent_cache),
            "context_cache": len(self._context_cache),
        }

    def queue_stats(self, queue: str, now: float | None = None) -> QueueStats | None:
        """Current ``QueueStats`` of one queue (None if never seen)."""
        q = self._queues.get(queue)
        if q is None:
            return None
        return self._queue_stats(q, self._now if now is None else now)
