"""Call-engine plumbing: channels, legs, bridges, device states and the wait primitive.

The scripts in :mod:`cti.simulator.calls` are written in terms of these helpers so that every
state change (a channel answering, a bridge forming, a device going busy) updates the model
and emits the same events, in the same field layout, as Asterisk does.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from cti.simulator.model import (
    DOWN,
    RING,
    UP,
    Agent,
    Bridge,
    Channel,
    PbxConfig,
    PbxState,
    Queue,
    QueueMember,
)
from cti.simulator.wire import Pairs, event

CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "No user responding",
    21: "Call Rejected",
    26: "Answered elsewhere",
}


@dataclass(eq=False)
class Leg:
    """One party of a call: a channel, plus its ``;2`` twin when it is a Local channel."""

    chan: Channel
    twin: Channel | None = None
    agent: Agent | None = None
    member: QueueMember | None = None

    @property
    def channels(self) -> list[Channel]:
        return [self.chan] if self.twin is None else [self.chan, self.twin]


@dataclass(eq=False)
class Request:
    kind: str  # hangup | redirect | blind | atxfer
    channel: str
    exten: str = ""
    context: str = ""


@dataclass(eq=False)
class SimCall:
    """A generated call, for tests to follow and steer."""

    kind: str
    linkedid: str = ""
    phase: str = "setup"  # setup | queued | ringing | talking | done
    outcome: str | None = None  # completed | abandoned | no_answer | failed | cancelled
    legs: list[Leg] = field(default_factory=list)
    bridge: Bridge | None = None
    queue: Queue | None = None
    channel_names: list[str] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    originated: asyncio.Event = field(default_factory=asyncio.Event)
    """The first leg is up (what a synchronous Originate waits for)."""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    requests: deque[Request] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    connected_at: float = 0.0
    hold_seconds: int = 0

    async def wait_answered(self, limit: float = 5.0) -> None:
        """Until both parties are bridged (raises TimeoutError after ``limit`` real seconds)."""
        async with asyncio.timeout(limit):
            await self.answered.wait()

    async def wait_finished(self, limit: float = 5.0) -> None:
        """Until every channel of the call is gone."""
        async with asyncio.timeout(limit):
            await self.finished.wait()

    def live_channels(self, state: PbxState) -> list[str]:
        return [n for n in self.channel_names if n in state.channels]


class CallHungUp(Exception):
    """Raised inside a script when the party it was waiting on hung up."""

    def __init__(self, leg: Leg) -> None:
        super().__init__(leg.chan.name)
        self.leg = leg


class EngineBase:
    """State and event helpers shared by the call scripts."""

    def __init__(
        self,
        state: PbxState,
        emit: Callable[[Pairs], None],
        clock: Callable[[], float],
        time_scale: float = 1.0,
    ) -> None:
        self.state = state
        self.emit = emit
        self.clock = clock
        self.time_scale = time_scale
        self.calls: set[SimCall] = set()
        self.consult_seconds = 2.0

    @property
    def cfg(self) -> PbxConfig:
        return self.state.config

    def find_call(self, channel: str) -> tuple[SimCall, Leg] | None:
        for call in self.calls:
            for leg in call.legs:
                if any(c.name == channel for c in leg.channels):
                    return call, leg
        return None

    def request(self, call: SimCall, req: Request) -> None:
        call.requests.append(req)
        call.wake.set()

    def cancel_all(self) -> None:
        """Stop every script without further events (PBX restart or shutdown)."""
        for call in list(self.calls):
            if call.task is not None:
                call.task.cancel()
            call.outcome = call.outcome or "cancelled"
            call.phase = "done"
            call.finished.set()
        self.calls.clear()

    # -- plumbing --------------------------------------------------------------------------

    def _start(self, call: SimCall, coro: Coroutine[Any, Any, None]) -> None:
        self.calls.add(call)
        self.state.processed_calls += 1

        async def runner() -> None:
            try:
                await coro
            finally:
                call.phase = "done"
                call.outcome = call.outcome or "completed"
                call.finished.set()
                self.calls.discard(call)

        call.task = asyncio.get_running_loop().create_task(runner())

    def now(self) -> float:
        return self.clock()

    async def pause(self, call: SimCall, seconds: float) -> bool:
        """Wait ``seconds`` of simulated time; True if a request cut the wait short."""
        if call.requests:
            return True
        call.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds) * self.time_scale):
                await call.wake.wait()
        return bool(call.requests)

    def ev(self, name: str, privilege: str, *blocks: Pairs) -> None:
        self.emit(event(name, privilege, *blocks))

    def chan_ev(self, name: str, chan: Channel, *extra: Pairs, privilege: str = "call,all") -> None:
        self.emit(event(name, privilege, chan.snapshot(), *extra))

    def dialplan(
        self, chan: Channel, context: str, exten: str, prio: int, app: str, data: str
    ) -> None:
        chan.context, chan.exten, chan.priority = context, exten, prio
        chan.application, chan.app_data = app, data
        if self.cfg.dialplan_events:
            self.chan_ev(
                "Newexten",
                chan,
                [("Extension", exten), ("Application", app), ("AppData", data)],
                privilege="dialplan,all",
            )

    def setvar(self, chan: Channel, name: str, value: str, *, always: bool = False) -> None:
        chan.variables[name.lstrip("_")] = value
        if always or self.cfg.dialplan_events:
            self.chan_ev(
                "VarSet", chan, [("Variable", name), ("Value", value)], privilege="dialplan,all"
            )

    def set_state(self, chan: Channel, state: int) -> None:
        chan.state = state
        self.chan_ev("Newstate", chan)
        self.refresh_device(chan.device)

    def set_callerid(self, chan: Channel, num: str, name: str) -> None:
        chan.caller_num, chan.caller_name = num, name
        self.chan_ev(
            "NewCallerid", chan, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")]
        )

    def set_connected(self, chan: Channel, num: str, name: str) -> None:
        chan.connected_num, chan.connected_name = num, name
        self.chan_ev("NewConnectedLine", chan)

    def refresh_device(self, device: str) -> None:
        """Recompute a device's state; on change emit what Asterisk emits for it."""
        new = self.state.aggregate_device_state(device)
        if self.state.device_states.get(device, "NOT_INUSE") == new:
            return
        self.state.device_states[device] = new
        self.ev("DeviceStateChange", "call,all", [("Device", device), ("State", new)])
        for queue, member in self.state.members_for_device(device):
            self.emit(self.state.member_status_event(queue, member, "QueueMemberStatus"))
        agent = self.state.agent_by_device(device)
        if agent is not None:
            self.ev("ExtensionStatus", "call,all", self.state.extension_status_fields(agent))

    def set_queue_device(self, queue: Queue) -> None:
        device = f"Queue:{queue.name}"
        new = "RINGING" if queue.callers else "NOT_INUSE"
        if self.state.device_states.get(device) != new:
            self.state.device_states[device] = new
            self.ev("DeviceStateChange", "call,all", [("Device", device), ("State", new)])

    # -- channels and legs -----------------------------------------------------------------

    def new_channel(
        self,
        call: SimCall,
        name: str,
        device: str,
        state: int,
        context: str,
        exten: str,
        *,
        caller: tuple[str, str] = ("<unknown>", "<unknown>"),
        connected: tuple[str, str] = ("<unknown>", "<unknown>"),
        is_local: bool = False,
    ) -> Channel:
        now = self.now()
        uid = self.state.new_uniqueid(now)
        if not call.linkedid:
            call.linkedid = uid
        chan = Channel(
            name=name,
            uniqueid=uid,
            linkedid=call.linkedid,
            device=device,
            created=now,
            state=state,
            caller_num=caller[0],
            caller_name=caller[1],
            connected_num=connected[0],
            connected_name=connected[1],
            context=context,
            exten=exten,
            is_local=is_local,
        )
        self.state.channels[name] = chan
        call.channel_names.append(name)
        self.chan_ev("Newchannel", chan)
        return chan

    def new_leg(
        self,
        call: SimCall,
        *,
        resource: str,
        device: str,
        state: int,
        context: str,
        exten: str,
        caller: tuple[str, str] = ("<unknown>", "<unknown>"),
        connected: tuple[str, str] = ("<unknown>", "<unknown>"),
        agent: Agent | None = None,
    ) -> Leg:
        """Create a party: one channel, or a Local ``;1``/``;2`` pair joined by LocalBridge."""
        if not self.cfg.local:
            name = self.state.new_channel_name(resource, self.cfg.tech)
            chan = self.new_channel(
                call, name, device, state, context, exten, caller=caller, connected=connected
            )
            leg = Leg(chan, agent=agent)
        else:
            base = self.state.new_channel_name(device.split("/", 1)[1], "Local")
            local_ctx, _, _ = device.partition("@")
            ctx = device.split("@", 1)[1] if "@" in device else context
            ext = local_ctx.split("/", 1)[1]
            one = self.new_channel(call, f"{base};1", device, DOWN, ctx, ext, is_local=True)
            two = self.new_channel(call, f"{base};2", device, RING, ctx, ext, is_local=True)
            leg = Leg(one, two, agent=agent)
        call.legs.append(leg)
        return leg

    def local_bridge(self, leg: Leg) -> None:
        if leg.twin is None:
            return
        self.ev(
            "LocalBridge",
            "call,all",
            leg.chan.snapshot("LocalOne"),
            leg.twin.snapshot("LocalTwo"),
            [("Context", leg.twin.context), ("Exten", leg.twin.exten), ("LocalOptimization", "No")],
        )

    def answer_leg(self, leg: Leg) -> None:
        if leg.twin is not None:
            self.dialplan(leg.twin, leg.twin.context, leg.twin.exten, 3, "Answer", "")
            self.set_state(leg.twin, UP)
        self.set_state(leg.chan, UP)

    def hangup_request(self, leg: Leg, cause: int = 16) -> None:
        """The party hangs up (remote BYE, or the Local ``;2`` side ending)."""
        if leg.twin is not None and leg.twin.name in self.state.channels:
            self.chan_ev("SoftHangupRequest", leg.twin, [("Cause", str(cause))])
            self.hangup_channel(leg.twin, 0)
        if leg.chan.name in self.state.channels:
            self.chan_ev("HangupRequest", leg.chan, [("Cause", str(cause))])

    def hangup_leg(self, leg: Leg, cause: int = 16) -> None:
        self.hangup_channel(leg.chan, cause)
        if leg.twin is not None:
            self.hangup_channel(leg.twin, cause)

    def hangup_channel(self, chan: Channel, cause: int) -> None:
        if self.state.channels.pop(chan.name, None) is None:
            return
        self.chan_ev(
            "Hangup", chan, [("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))]
        )
        self.refresh_device(chan.device)

    def dial_pairs(self, src: Channel | None, dest: Channel) -> list[Pairs]:
        blocks = [] if src is None else [src.snapshot()]
        return [*blocks, dest.snapshot("Dest")]

    # -- bridges ---------------------------------------------------------------------------

    def bridge_create(self) -> Bridge:
        bridge = Bridge(str(uuid.uuid4()))
        self.state.bridges[bridge.id] = bridge
        self.ev("BridgeCreate", "call,all", bridge.snapshot())
        return bridge

    def bridge_enter(self, bridge: Bridge, chan: Channel) -> None:
        bridge.channels.append(chan.name)
        chan.bridge_id = bridge.id
        self.ev("BridgeEnter", "call,all", bridge.snapshot(), chan.snapshot())

    def bridge_leave(self, bridge: Bridge, chan: Channel) -> None:
        if chan.name not in bridge.channels:
            return
        bridge.channels.remove(chan.name)
        chan.bridge_id = ""
        self.ev("BridgeLeave", "call,all", bridge.snapshot(), chan.snapshot())

    def bridge_destroy(self, bridge: Bridge) -> None:
        if self.state.bridges.pop(bridge.id, None) is not None:
            self.ev("BridgeDestroy", "call,all", bridge.snapshot())

    def bridge_legs(self, call: SimCall, a: Leg, b: Leg) -> None:
        bridge = call.bridge or self.bridge_create()
        call.bridge = bridge
        self.bridge_enter(bridge, b.chan)
        self.bridge_enter(bridge, a.chan)
        self.setvar(b.chan, "BRIDGEPEER", a.chan.name)
        self.setvar(a.chan, "BRIDGEPEER", b.chan.name)

    # -- requests --------------------------------------------------------------------------

    def take_request(self, call: SimCall) -> Request | None:
        return call.requests.popleft() if call.requests else None

    def leg_of(self, call: SimCall, channel: str) -> Leg | None:
        for leg in call.legs:
            if any(c.name == channel for c in leg.channels):
                return leg
        return None

    # -- shared call steps -----------------------------------------------------------------

    def originate_failure(self, channel: str, context: str, exten: str, action_id: str) -> None:
        """OriginateResponse for a channel that cannot be created (unknown endpoint)."""
        self.ev(
            "OriginateResponse",
            "call,all",
            [
                ("ActionID", action_id),
                ("Response", "Failure"),
                ("Channel", channel),
                ("Context", context),
                ("Exten", exten),
                ("Reason", "0"),
                ("Uniqueid", "<unknown>"),
                ("CallerIDNum", "<unknown>"),
                ("CallerIDName", "<unknown>"),
            ],
        )

    def _originate_response(
        self, chan: Channel, action_id: str, result: str, reason: int, context: str, exten: str
    ) -> None:
        self.ev(
            "OriginateResponse",
            "call,all",
            [
                ("ActionID", action_id),
                ("Response", result),
                ("Channel", chan.name),
                ("Context", context),
                ("Exten", exten),
                ("Reason", str(reason)),
                ("Uniqueid", chan.uniqueid),
                ("CallerIDNum", chan.caller_num),
                ("CallerIDName", chan.caller_name),
            ],
        )

    def _mixmonitor(self, chan: Channel, context: str, prio: int) -> None:
        self.dialplan(chan, context, chan.exten, prio, "MixMonitor", f"{chan.uniqueid}.wav,b")
        chan.mixmonitor = f"{self.cfg.spool}/{chan.uniqueid}.wav"
        self.setvar(chan, "MIXMONITOR_FILENAME", chan.mixmonitor, always=True)
        self.chan_ev("MixMonitorStart", chan)

    def _ring_seconds(self, agent: Agent | None) -> float:
        if agent is None:
            return float("inf")
        override = self.state.db.get(f"lab/ring/{agent.extension}")
        if override is not None:
            with contextlib.suppress(ValueError):
                return float(override)
        return agent.ring_seconds

    def outside_behaviour(self, number: str) -> str | None:
        """How an outside number answers a call from the PBX: the AstDB ``lab/outside/<n>``
        value, ``busy`` (486, cause 17) or ``noanswer`` (rings out); None: it answers."""
        return self.state.db.get(f"lab/outside/{number}")

    def _cancel_ringing(
        self, call: SimCall, src: Channel, legs: list[Leg], status: str, cause: int | None = None
    ) -> None:
        for leg in legs:
            self.ev(
                "DialEnd", "call,all", *self.dial_pairs(src, leg.chan), [("DialStatus", status)]
            )
            self.hangup_request(leg, 0)
            self.hangup_leg(leg, cause if cause is not None else 0 if status == "CANCEL" else 16)
            if leg in call.legs:
                call.legs.remove(leg)

    def _leave_queue(self, queue: Queue, caller: Leg) -> None:
        pos = queue.position(caller.chan)
        queue.callers = [qc for qc in queue.callers if qc.channel is not caller.chan]
        self.set_queue_device(queue)
        self.chan_ev(
            "QueueCallerLeave",
            caller.chan,
            [("Queue", queue.name), ("Position", str(pos)), ("Count", str(len(queue.callers)))],
            privilege="agent,all",
        )

    def _end_queue_part(self, call: SimCall, reason: str) -> None:
        """AgentComplete once the queue call's agent part is over (hangup or transfer)."""
        queue = call.queue
        if queue is None:
            return
        caller = next((leg for leg in call.legs if leg.member is None), None)
        agent = next((leg for leg in call.legs if leg.member is not None), None)
        if caller is None or agent is None or agent.member is None:
            return
        member = agent.member
        talk = int(self.now() - (call.connected_at or self.now()))
        self.ev(
            "AgentComplete",
            "agent,all",
            *self.dial_pairs(caller.chan, agent.chan),
            [
                ("Queue", queue.name),
                ("Interface", member.interface),
                ("MemberName", member.name),
                ("HoldTime", str(call.hold_seconds)),
                ("TalkTime", str(talk)),
                ("Reason", reason),
            ],
        )
        queue.talktime = (queue.talktime * queue.completed + talk) // (queue.completed + 1)
        queue.completed += 1
        member.in_call = False
        member.calls_taken += 1
        member.last_call = int(self.now())
        agent.member = None
        call.queue = None

    def _teardown(self, call: SimCall, first: Leg, other: Leg) -> None:
        """``first`` hangs up; the bridge dissolves and the other party is hung up too."""
        bridge = call.bridge
        self.hangup_request(first)
        if bridge is not None:
            self.bridge_leave(bridge, first.chan)
        reason = "agent" if first.member is not None else "caller"
        self._end_queue_part(call, reason)
        if bridge is not None:
            self.bridge_leave(bridge, other.chan)
        if other.twin is not None:
            self.chan_ev("HangupRequest", other.twin, [("Cause", "16")])
        self.chan_ev("SoftHangupRequest", other.chan, [("Cause", "16")])
        self.hangup_leg(other, 16)
        if bridge is not None:
            self.bridge_destroy(bridge)
            call.bridge = None
        self.hangup_leg(first, 16)
        call.outcome = call.outcome or "completed"
