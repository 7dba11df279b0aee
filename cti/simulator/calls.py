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

from collections.abc import Mapping

from cti.simulator.engine import CallHungUp, EngineBase, Leg, Request, SimCall
from cti.simulator.model import (
    DOWN,
    RING,
    RINGING,
    UP,
    Agent,
    Queue,
    QueueCaller,
    QueueMember,
)

__all__ = ["CallEngine", "Leg", "Request", "SimCall"]


class CallEngine(EngineBase):
    """Runs call scripts against the PBX state; ``emit`` delivers each event to clients."""

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
        """A caller on the trunk dials a DID and waits in a queue (answered or abandoned).

        ``talk``: seconds bridged to the agent; ``patience``: seconds the caller waits in
        the queue before hanging up (QueueCallerAbandon); ``hangup_by``: ``caller`` or
        ``agent``; ``agents_answer=False`` lets the phones ring without answering;
        ``action_id``: the call came from an Originate, so emit its OriginateResponse.
        All times are simulated seconds (scaled by the server's ``time_scale``).
        """
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
        """Originate: ring the agent's phone first, then dial the customer from ``internal``.

        ``number`` may also be another agent's extension (internal call). The agent's phone
        answers after its ``ring_seconds`` (or the AstDB ``lab/ring/<ext>`` value, like the
        lab); ``variables`` show up as VarSet events on the agent's channel, as in the trace.
        """
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
            outside = self.outside_behaviour(target)
            if outside == "busy":
                ring_s = min(ring_s, 0.5)  # the far end answers 486 Busy Here at once
            elif outside == "noanswer":
                answers = False
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
        if agent is None and self.outside_behaviour(target) == "busy":
            self._cancel_ringing(call, src_chan, [leg], "BUSY", cause=17)
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
            busy = not target_is_agent and self.outside_behaviour(number) == "busy"
            self.setvar(chan, "DIALSTATUS", "BUSY" if busy else "NOANSWER")
            self.hangup_request(leg)
            self.hangup_leg(leg)
            call.outcome = "no_answer"
            return
        self.setvar(chan, "DIALSTATUS", "ANSWER")
        self.bridge_legs(call, leg, other)
        call.phase = "talking"
        call.answered.set()
        await self._talk(call, other, leg, talk, "caller" if hangup_by == "customer" else "agent")
