"""Call scripts: realistic AMI event sequences for generated calls.

Each call runs as one asyncio task that mutates :class:`PbxState` and emits the events a real
Asterisk 22 emits for the same thing, in the order the recorded traces show (inbound queue
call answered or abandoned, click-to-call originate). Actions that touch a live call
(``Hangup``, ``Redirect``, ``BlindTransfer``, ``Atxfer``) are queued on the call and handled
at its next wait, the way a channel thread picks up a soft hangup or a masquerade.

Channel technology comes from :class:`PbxConfig`: ``PJSIP/1001-0000000a`` single channels, or
the lab's ``Local/...;1``/``;2`` pairs; gateway code must work with both.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from cti.simulator.model import (
    DOWN,
    RING,
    RINGING,
    UP,
    Agent,
    Bridge,
    Channel,
    PbxConfig,
    PbxState,
    Queue,
    QueueCaller,
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


class CallEngine:
    """Runs call scripts against the PBX state; ``emit`` delivers each event to clients."""

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

    # -- public entry points ---------------------------------------------------------------

    def inbound_call(
        self,
        caller: str,
        caller_name: str = "",
        did: str = "02188776655",
        *,
        queue: str | None = None,
        talk: float = 6.0,
        patience: float = 60.0,
        hangup_by: str = "caller",
        agents_answer: bool = True,
        variables: Mapping[str, str] | None = None,
        action_id: str | None = None,
    ) -> SimCall:
        """A caller on the trunk dials a DID and waits in a queue (answered or abandoned)."""
        call = SimCall("inbound")
        self._start(
            call,
            self._inbound(
                call,
                caller,
                caller_name or "<unknown>",
                did,
                queue or self.cfg.did_queues.get(did, self.cfg.default_queue),
                talk,
                patience,
                hangup_by,
                agents_answer,
                dict(variables or {}),
                action_id,
            ),
        )
        return call

    def click_to_call(
        self,
        agent: str,
        number: str,
        *,
        talk: float = 5.0,
        customer_answers: bool = True,
        customer_ring: float = 1.0,
        hangup_by: str = "customer",
        callerid: tuple[str, str] | None = None,
        context: str | None = None,
        variables: Mapping[str, str] | None = None,
        action_id: str | None = None,
        ring_timeout: float = 30.0,
    ) -> SimCall:
        """Originate: ring the agent's phone first, then dial the customer from ``internal``."""
        call = SimCall("click_to_call")
        agent_obj = self.state.agent(agent) or Agent(agent)
        self._start(
            call,
            self._click_to_call(
                call,
                agent_obj,
                number,
                talk,
                customer_answers,
                customer_ring,
                hangup_by,
                callerid or (agent_obj.extension, agent_obj.name),
                context or self.cfg.internal_context,
                dict(variables or {}),
                action_id,
                ring_timeout,
            ),
        )
        return call

    def originate_failure(self, channel: str, context: str, exten: str, action_id: str) -> None:
        """OriginateResponse for a channel that cannot be created (unknown endpoint)."""
        self.emit(
            event(
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
        )

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

    # -- scripts ---------------------------------------------------------------------------

    async def _inbound(
        self,
        call: SimCall,
        num: str,
        name: str,
        did: str,
        queue_name: str,
        talk: float,
        patience: float,
        hangup_by: str,
        agents_answer: bool,
        variables: dict[str, str],
        action_id: str | None,
    ) -> None:
        cfg = self.cfg
        if cfg.local:
            caller = self.new_leg(
                call,
                resource="s@caller-sim",
                device=cfg.outside_device,
                state=RING,
                context="caller-sim",
                exten="s",
            )
            await self._local_originate_preamble(call, caller, (num, name), variables)
            caller.chan.context, caller.chan.exten = cfg.inbound_context, did
        else:
            caller = self.new_leg(
                call,
                resource=cfg.trunk,
                device=cfg.outside_device,
                state=RING,
                context=cfg.inbound_context,
                exten=did,
                caller=(num, name),
                connected=(num, name),
            )
            caller.chan.dnid = did
            for var, value in variables.items():
                self.setvar(caller.chan, var, value, always=True)
            self.refresh_device(caller.chan.device)
        if action_id:
            self._originate_response(caller.chan, action_id, "Success", 4, cfg.inbound_context, did)
        chan = caller.chan
        self.dialplan(chan, cfg.inbound_context, did, 1, "NoOp", f"inbound {num} to {did}")
        self.dialplan(chan, cfg.inbound_context, did, 2, "Set", f"__DID={did}")
        self.setvar(chan, "__DID", did, always=True)
        self.dialplan(chan, cfg.inbound_context, did, 3, "Goto", "inbound-route,s,1")
        self.dialplan(chan, "inbound-route", "s", 1, "Set", "TIMEOUT(absolute)=120")
        chan.hangup_at = int(self.now()) + 120
        if chan.state != UP:
            self.dialplan(chan, "inbound-route", "s", 2, "Answer", "")
            self.set_state(chan, UP)
        call.originated.set()
        if cfg.record:
            self._mixmonitor(chan, "inbound-route", 2)
        queue = self.state.queues.get(queue_name)
        if queue is None:
            self.hangup_request(caller)
            self.hangup_leg(caller)
            call.outcome = "failed"
            return
        await self._queue_call(call, caller, queue, talk, patience, hangup_by, agents_answer)

    async def _local_originate_preamble(
        self, call: SimCall, leg: Leg, cid: tuple[str, str], variables: dict[str, str]
    ) -> None:
        """What an Originate of a ``Local/`` channel produces before it reaches the dialplan."""
        assert leg.twin is not None
        self.dialplan(leg.chan, leg.chan.context, leg.chan.exten, 1, "AppDial2", "(Outgoing Line)")
        for chan in leg.channels:
            for var, value in variables.items():
                self.setvar(chan, var, value, always=True)
        self.set_callerid(leg.chan, *cid)
        self.set_connected(leg.chan, *cid)
        self.set_callerid(leg.twin, *cid)
        self.set_connected(leg.twin, *cid)
        self.local_bridge(leg)
        self.ev(
            "DialBegin",
            "call,all",
            leg.chan.snapshot("Dest"),
            [("DialString", leg.chan.device.split("/", 1)[1])],
        )
        self.answer_leg(leg)
        self.ev("DialEnd", "call,all", leg.chan.snapshot("Dest"), [("DialStatus", "ANSWER")])

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
        self.setvar(
            chan, "MIXMONITOR_FILENAME", f"{self.cfg.spool}/{chan.uniqueid}.wav", always=True
        )
        self.chan_ev("MixMonitorStart", chan)

    async def _queue_call(
        self,
        call: SimCall,
        caller: Leg,
        queue: Queue,
        talk: float,
        patience: float,
        hangup_by: str,
        agents_answer: bool,
    ) -> None:
        chan = caller.chan
        self.dialplan(chan, "inbound-route", "s", 3, "Queue", f"{queue.name},tT,,,60")
        joined = self.now()
        queue.callers.append(QueueCaller(chan, joined, len(queue.callers) + 1))
        call.queue = queue
        call.phase = "queued"
        self.set_queue_device(queue)
        self.chan_ev(
            "QueueCallerJoin",
            chan,
            [
                ("Queue", queue.name),
                ("Position", str(len(queue.callers))),
                ("Count", str(len(queue.callers))),
            ],
            privilege="agent,all",
        )
        deadline = joined + patience
        while True:
            if self.now() >= deadline:
                self._abandon(call, caller, queue, [])
                return
            members = self._pick_members(queue, caller)
            if not members:
                if await self.pause(call, min(0.5, max(0.0, deadline - self.now()))):
                    req = self.take_request(call)
                    if req and req.kind == "hangup" and self.leg_of(call, req.channel) is caller:
                        self._abandon(call, caller, queue, [])
                        return
                    if req and req.kind == "redirect" and self.leg_of(call, req.channel) is caller:
                        self._leave_queue(queue, caller)
                        call.queue = None
                        await self._redirect_to(call, caller, req)
                        return
                continue
            result = await self._ring_members(call, caller, queue, members, deadline, agents_answer)
            if isinstance(result, Leg):
                await self._talk(call, caller, result, talk, hangup_by)
                return
            if result in ("abandon", "redirected"):
                return
            await self.pause(call, queue.retry)

    def _pick_members(self, queue: Queue, caller: Leg) -> list[QueueMember]:
        if queue.callers and queue.callers[0].channel is not caller.chan:
            return []  # not first in line
        free = [
            m
            for m in queue.members.values()
            if not m.paused
            and not m.in_call
            and self.state.device_states.get(m.state_interface, "NOT_INUSE") == "NOT_INUSE"
        ]
        if not free:
            return []
        if queue.strategy == "ringall":
            return free
        pick = free[queue.rr_next % len(free)]
        queue.rr_next += 1
        return [pick]

    async def _ring_members(
        self,
        call: SimCall,
        caller: Leg,
        queue: Queue,
        members: list[QueueMember],
        deadline: float,
        agents_answer: bool,
    ) -> Leg | str:
        cfg = self.cfg
        chan = caller.chan
        ringing: list[Leg] = []
        for member in members:
            ext = member.state_interface.rsplit("/", 1)[-1].split("@", 1)[0]
            agent = self.state.agent(ext) or Agent(ext)
            leg = self.new_leg(
                call,
                resource=ext,
                device=member.state_interface,
                state=DOWN,
                context=cfg.agent_context,
                exten="s",
                agent=agent,
            )
            leg.member = member
            self.dialplan(
                leg.chan, leg.chan.context, leg.chan.exten, 1, "AppQueue", "(Outgoing Line)"
            )
            self.set_callerid(leg.chan, chan.caller_num, chan.caller_name)
            self.setvar(leg.chan, "__DID", chan.variables.get("DID", ""), always=True)
            if leg.twin is not None:
                self.setvar(leg.twin, "__DID", chan.variables.get("DID", ""), always=True)
                self.set_callerid(leg.twin, chan.caller_num, chan.caller_name)
                self.set_connected(leg.twin, chan.caller_num, chan.caller_name)
                self.local_bridge(leg)
            self.ev(
                "AgentCalled",
                "agent,all",
                *self.dial_pairs(chan, leg.chan),
                [
                    ("Queue", queue.name),
                    ("Interface", member.interface),
                    ("MemberName", member.name),
                ],
            )
            self.ev(
                "DialBegin",
                "call,all",
                *self.dial_pairs(chan, leg.chan),
                [("DialString", member.interface)],
            )
            ringing.append(leg)
        for leg in ringing:
            if leg.twin is not None:
                self.dialplan(leg.twin, leg.twin.context, leg.twin.exten, 1, "Ringing", "")
            leg.chan.connected_num, leg.chan.connected_name = chan.caller_num, chan.caller_name
            self.set_state(leg.chan, RINGING)
            self.ev(
                "DialState",
                "call,all",
                *self.dial_pairs(chan, leg.chan),
                [("DialStatus", "RINGING")],
            )
        call.phase = "ringing"
        ring_start = self.now()
        while True:
            answering = [
                (ring_start + self._ring_seconds(leg.agent), i, leg)
                for i, leg in enumerate(ringing)
                if agents_answer and leg.agent is not None and leg.agent.answers
            ]
            answer_at, _, winner = min(answering, default=(float("inf"), 0, None))
            limit = min(answer_at, ring_start + queue.timeout, deadline)
            if await self.pause(call, limit - self.now()):
                req = self.take_request(call)
                if req is None:
                    continue
                target = self.leg_of(call, req.channel)
                if target is caller and req.kind == "hangup":
                    self._abandon(call, caller, queue, ringing)
                    return "abandon"
                if target is caller and req.kind == "redirect":
                    self._cancel_ringing(call, chan, ringing, "CANCEL")
                    self._leave_queue(queue, caller)
                    call.queue = None
                    await self._redirect_to(call, caller, req)
                    return "redirected"
                if target in ringing and req.kind == "hangup":
                    assert target is not None
                    self._cancel_ringing(call, chan, [target], "BUSY")
                    ringing.remove(target)
                    if not ringing:
                        call.phase = "queued"
                        return "retry"
                continue
            now = self.now()
            if winner is not None and limit == answer_at:
                self._connect_queue_call(call, caller, queue, winner, ringing, ring_start)
                return winner
            if limit == deadline:
                self._abandon(call, caller, queue, ringing)
                return "abandon"
            # ring timeout: Asterisk gives up on these members and retries after `retry`
            for leg in ringing:
                assert leg.member is not None
                self.ev(
                    "AgentRingNoAnswer",
                    "agent,all",
                    *self.dial_pairs(chan, leg.chan),
                    [
                        ("Queue", queue.name),
                        ("Interface", leg.member.interface),
                        ("MemberName", leg.member.name),
                        ("RingTime", str(int(now - ring_start))),
                    ],
                )
            self._cancel_ringing(call, chan, ringing, "NOANSWER")
            call.phase = "queued"
            return "retry"

    def _ring_seconds(self, agent: Agent | None) -> float:
        if agent is None:
            return float("inf")
        override = self.state.db.get(f"lab/ring/{agent.extension}")
        if override is not None:
            with contextlib.suppress(ValueError):
                return float(override)
        return agent.ring_seconds

    def _cancel_ringing(self, call: SimCall, src: Channel, legs: list[Leg], status: str) -> None:
        for leg in legs:
            self.ev(
                "DialEnd", "call,all", *self.dial_pairs(src, leg.chan), [("DialStatus", status)]
            )
            self.hangup_request(leg, 0)
            self.hangup_leg(leg, 0 if status == "CANCEL" else 16)
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

    def _abandon(self, call: SimCall, caller: Leg, queue: Queue, ringing: list[Leg]) -> None:
        chan = caller.chan
        self.hangup_request(caller)
        self._cancel_ringing(call, chan, ringing, "CANCEL")
        entry = next((qc for qc in queue.callers if qc.channel is chan), None)
        hold = int(self.now() - entry.joined) if entry else 0
        self.chan_ev(
            "QueueCallerAbandon",
            chan,
            [
                ("Queue", queue.name),
                ("Position", str(queue.position(chan))),
                ("OriginalPosition", str(entry.original_position if entry else 1)),
                ("HoldTime", str(hold)),
            ],
            privilege="agent,all",
        )
        queue.abandoned += 1
        self._leave_queue(queue, caller)
        self.hangup_leg(caller, 16)
        call.outcome = "abandoned"

    def _connect_queue_call(
        self,
        call: SimCall,
        caller: Leg,
        queue: Queue,
        winner: Leg,
        ringing: list[Leg],
        ring_start: float,
    ) -> None:
        chan = caller.chan
        self.answer_leg(winner)
        self.ev(
            "DialEnd", "call,all", *self.dial_pairs(chan, winner.chan), [("DialStatus", "ANSWER")]
        )
        self._cancel_ringing(call, chan, [leg for leg in ringing if leg is not winner], "CANCEL")
        entry = next((qc for qc in queue.callers if qc.channel is chan), None)
        hold = int(self.now() - entry.joined) if entry else 0
        self._leave_queue(queue, caller)
        member = winner.member
        assert member is not None
        self.setvar(chan, "QUEUEWAIT", str(hold))
        self.ev(
            "AgentConnect",
            "agent,all",
            *self.dial_pairs(chan, winner.chan),
            [
                ("Queue", queue.name),
                ("Interface", member.interface),
                ("MemberName", member.name),
                ("HoldTime", str(hold)),
                ("RingTime", str(int(self.now() - ring_start))),
            ],
        )
        queue.holdtime = (queue.holdtime * queue.completed + hold) // (queue.completed + 1)
        member.in_call = True
        self.emit(self.state.member_status_event(queue, member, "QueueMemberStatus"))
        self.bridge_legs(call, caller, winner)
        call.phase = "talking"
        call.answered.set()
        call.connected_at = self.now()
        call.hold_seconds = hold

    async def _talk(self, call: SimCall, a: Leg, b: Leg, talk: float, hangup_by: str) -> None:
        """Both parties bridged; runs until someone hangs up; handles transfers meanwhile."""
        end_at = self.now() + talk
        while True:
            if not await self.pause(call, end_at - self.now()):
                first = a if hangup_by in ("caller", "customer") else b
                self._teardown(call, first, a if first is b else b)
                return
            req = self.take_request(call)
            if req is None:
                continue
            leg = self.leg_of(call, req.channel)
            if leg is None:
                continue
            other = b if leg is a else a
            if req.kind == "hangup":
                self._teardown(call, leg, other)
                return
            if req.kind == "blind":
                new = await self._blind_transfer(call, leg, other, req)
            elif req.kind == "atxfer":
                new = await self._attended_transfer(call, leg, other, req)
            else:  # redirect: the named channel moves on, its peer is left alone and hung up
                self._end_queue_part(call, "transfer")
                assert call.bridge is not None
                bridge = call.bridge
                self.bridge_leave(bridge, leg.chan)
                self.bridge_leave(bridge, other.chan)
                self.hangup_request(other)
                self.hangup_leg(other)
                self.bridge_destroy(bridge)
                call.bridge = None
                await self._redirect_to(call, leg, req, talk=max(1.0, end_at - self.now()))
                return
            if new is None:
                return
            a, b = new

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

    async def _dial(
        self,
        call: SimCall,
        src: Leg,
        target: str,
        context: str,
        ring_timeout: float = 30.0,
        *,
        ring: float | None = None,
        answers: bool = True,
    ) -> Leg | None:
        """``Dial()`` from ``src`` to an agent extension or an outside number.

        Returns the answered leg, or None (no answer / rejected). Raises CallHungUp if the
        caller hung up while it rang.
        """
        cfg = self.cfg
        agent = self.state.agent(target)
        src_chan = src.chan
        if agent is not None:
            device = cfg.agent_device(agent.extension)
            resource = agent.extension
            ring_s = self._ring_seconds(agent) if ring is None else ring
            answers = answers and agent.answers
            dial_string = device.split("/", 1)[1]
            caller = (src_chan.caller_num, src_chan.caller_name)
        else:
            device = cfg.outside_device
            resource = cfg.trunk
            ring_s = 1.0 if ring is None else ring
            dial_string = f"{target}@{cfg.trunk}" if not cfg.local else "s@caller-sim"
            caller = (target, "<unknown>")
        leg = self.new_leg(
            call,
            resource=resource,
            device=device,
            state=DOWN,
            context=cfg.agent_context if agent else cfg.inbound_context,
            exten=target,
            agent=agent,
        )
        self.set_callerid(leg.chan, *caller)
        self.set_connected(leg.chan, src_chan.caller_num, src_chan.caller_name)
        if leg.twin is not None:
            self.set_callerid(leg.twin, src_chan.caller_num, src_chan.caller_name)
            self.local_bridge(leg)
        self.ev(
            "DialBegin",
            "call,all",
            *self.dial_pairs(src_chan, leg.chan),
            [("DialString", dial_string)],
        )
        self.set_state(leg.chan, RINGING)
        self.ev(
            "DialState",
            "call,all",
            *self.dial_pairs(src_chan, leg.chan),
            [("DialStatus", "RINGING")],
        )
        until = self.now() + (min(ring_s, ring_timeout) if answers else ring_timeout)
        while await self.pause(call, until - self.now()):
            req = self.take_request(call)
            if req is None:
                continue
            hit = self.leg_of(call, req.channel)
            if hit is src and req.kind == "hangup":
                self._cancel_ringing(call, src_chan, [leg], "CANCEL")
                raise CallHungUp(src)
            if hit is leg and req.kind == "hangup":
                self._cancel_ringing(call, src_chan, [leg], "BUSY")
                return None
        if not answers or ring_s > ring_timeout:
            self._cancel_ringing(call, src_chan, [leg], "NOANSWER")
            return None
        self.answer_leg(leg)
        self.ev(
            "DialEnd", "call,all", *self.dial_pairs(src_chan, leg.chan), [("DialStatus", "ANSWER")]
        )
        return leg

    async def _redirect_to(self, call: SimCall, leg: Leg, req: Request, talk: float = 5.0) -> None:
        """The channel continues in the dialplan at exten@context: dial it, talk, hang up."""
        context = req.context or leg.chan.context
        self.dialplan(leg.chan, context, req.exten, 1, "Dial", f"{req.exten},30")
        try:
            target = await self._dial(call, leg, req.exten, context)
        except CallHungUp:
            self.hangup_leg(leg)
            call.outcome = "abandoned"
            return
        if target is None:
            self.hangup_request(leg)
            self.hangup_leg(leg)
            call.outcome = "no_answer"
            return
        self.bridge_legs(call, leg, target)
        call.phase = "talking"
        call.answered.set()
        await self._talk(call, leg, target, talk, "caller")

    async def _blind_transfer(
        self, call: SimCall, transferer: Leg, transferee: Leg, req: Request
    ) -> tuple[Leg, Leg] | None:
        bridge = call.bridge
        assert bridge is not None
        context = req.context or transferer.chan.context
        self.ev(
            "BlindTransfer",
            "call,all",
            [("Result", "Success")],
            transferer.chan.snapshot("Transferer"),
            transferee.chan.snapshot("Transferee"),
            bridge.snapshot(),
            [("IsExternal", "No"), ("Context", context), ("Extension", req.exten)],
        )
        self._end_queue_part(call, "transfer")
        self.bridge_leave(bridge, transferer.chan)
        self.hangup_request(transferer)
        self.hangup_leg(transferer)
        call.legs.remove(transferer)
        self.bridge_leave(bridge, transferee.chan)
        self.bridge_destroy(bridge)
        call.bridge = None
        self.dialplan(transferee.chan, context, req.exten, 1, "Dial", f"{req.exten},30")
        try:
            target = await self._dial(call, transferee, req.exten, context)
        except CallHungUp:
            self.hangup_leg(transferee)
            return None
        if target is None:
            self.hangup_request(transferee)
            self.hangup_leg(transferee)
            return None
        self.bridge_legs(call, transferee, target)
        return transferee, target

    async def _attended_transfer(
        self, call: SimCall, transferer: Leg, transferee: Leg, req: Request
    ) -> tuple[Leg, Leg] | None:
        bridge1 = call.bridge
        assert bridge1 is not None
        self.chan_ev("MusicOnHoldStart", transferee.chan, [("Class", "default")])
        self.bridge_leave(bridge1, transferer.chan)
        try:
            target = await self._dial(
                call, transferer, req.exten, req.context or transferer.chan.context
            )
        except CallHungUp:  # transferer hung up while the target rang: plain hangup
            self.chan_ev("MusicOnHoldStop", transferee.chan)
            self._teardown(call, transferer, transferee)
            return None
        if target is None:  # no answer: back to the original call
            self.chan_ev("MusicOnHoldStop", transferee.chan)
            self.bridge_enter(bridge1, transferer.chan)
            return transferer, transferee
        bridge2 = self.bridge_create()
        self.bridge_enter(bridge2, transferer.chan)
        self.bridge_enter(bridge2, target.chan)
        await self.pause(call, self.consult_seconds)
        self.ev(
            "AttendedTransfer",
            "call,all",
            [("Result", "Success")],
            transferer.chan.snapshot("OrigTransferer"),
            bridge1.snapshot("Orig"),
            transferer.chan.snapshot("SecondTransferer"),
            bridge2.snapshot("Second"),
            transferee.chan.snapshot("Transferee"),
            target.chan.snapshot("TransferTarget"),
            [("IsExternal", "No"), ("DestType", "Bridge"), ("DestBridgeUniqueid", bridge1.id)],
        )
        self._end_queue_part(call, "transfer")
        self.bridge_leave(bridge2, target.chan)
        self.bridge_enter(bridge1, target.chan)
        self.chan_ev("MusicOnHoldStop", transferee.chan)
        self.bridge_leave(bridge2, transferer.chan)
        self.bridge_destroy(bridge2)
        self.hangup_request(transferer)
        self.hangup_leg(transferer)
        call.legs.remove(transferer)
        return transferee, target

    async def _click_to_call(
        self,
        call: SimCall,
        agent: Agent,
        number: str,
        talk: float,
        customer_answers: bool,
        customer_ring: float,
        hangup_by: str,
        callerid: tuple[str, str],
        context: str,
        variables: dict[str, str],
        action_id: str | None,
        ring_timeout: float,
    ) -> None:
        cfg = self.cfg
        device = cfg.agent_device(agent.extension)
        leg = self.new_leg(
            call,
            resource=agent.extension,
            device=device,
            state=DOWN,
            context=cfg.agent_context,
            exten="s",
            agent=agent,
        )
        chan = leg.chan
        self.dialplan(chan, chan.context, chan.exten, 1, "AppDial2", "(Outgoing Line)")
        for c in leg.channels:
            for var, value in variables.items():
                self.setvar(c, var, value, always=True)
        self.set_callerid(chan, *callerid)
        self.set_connected(chan, *callerid)
        if leg.twin is not None:
            self.set_callerid(leg.twin, *callerid)
            self.local_bridge(leg)
            self.ev(
                "DialBegin",
                "call,all",
                chan.snapshot("Dest"),
                [("DialString", device.split("/", 1)[1])],
            )
            self.dialplan(leg.twin, leg.twin.context, leg.twin.exten, 1, "Ringing", "")
        self.set_state(chan, RINGING)
        if leg.twin is not None:
            self.ev("DialState", "call,all", chan.snapshot("Dest"), [("DialStatus", "RINGING")])
        call.phase = "ringing"
        ring = self._ring_seconds(agent)
        answers = agent.answers and ring <= ring_timeout
        if await self.pause(call, ring if answers else ring_timeout) or not answers:
            # agent rejected (Hangup action on the ringing phone) or did not answer in time
            self.take_request(call)
            if action_id:
                self._originate_response(chan, action_id, "Failure", 3, context, number)
            if leg.twin is not None:
                self.ev("DialEnd", "call,all", chan.snapshot("Dest"), [("DialStatus", "NOANSWER")])
            self.hangup_request(leg, 19)
            self.hangup_leg(leg, 19)
            call.outcome = "no_answer"
            return
        self.answer_leg(leg)
        call.originated.set()
        if action_id:
            self._originate_response(chan, action_id, "Success", 4, context, number)
        if leg.twin is not None:
            self.ev("DialEnd", "call,all", chan.snapshot("Dest"), [("DialStatus", "ANSWER")])
        # The answered phone now runs the dialplan at number@internal.
        target_is_agent = self.state.agent(number) is not None
        if not target_is_agent and cfg.outbound_callerid:
            self.dialplan(chan, context, number, 1, "Set", f"CALLERID(num)={cfg.outbound_callerid}")
            self.set_callerid(chan, cfg.outbound_callerid, chan.caller_name)
        if cfg.record:
            self._mixmonitor(chan, context, 2)
        dial_data = (
            f"{cfg.agent_device(number)},20"
            if target_is_agent
            else ("Local/s@caller-sim,30" if cfg.local else f"{cfg.tech}/{number}@{cfg.trunk},30")
        )
        self.dialplan(chan, context, number, 3, "Dial", dial_data)
        try:
            other = await self._dial(
                call,
                leg,
                number,
                context,
                ring=None if target_is_agent else customer_ring,
                answers=customer_answers,
            )
        except CallHungUp:
            self.hangup_leg(leg)
            call.outcome = "cancelled"
            return
        if other is None:
            self.setvar(chan, "DIALSTATUS", "NOANSWER")
            self.hangup_request(leg)
            self.hangup_leg(leg)
            call.outcome = "no_answer"
            return
        self.setvar(chan, "DIALSTATUS", "ANSWER")
        self.bridge_legs(call, leg, other)
        call.phase = "talking"
        call.answered.set()
        await self._talk(call, other, leg, talk, "caller" if hangup_by == "customer" else "agent")
