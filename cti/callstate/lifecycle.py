"""How channels and calls come and go: creation, Linkedid moves, bridges, rings, answers, ends.

Every handler that touches a call goes through these few operations, so the rules that keep the
state consistent (a call ends exactly once, an agent is released when it has nothing left in
a call, dropped state is never re-created by a late event) live in one place.
"""

from __future__ import annotations

import math
from typing import Any

from cti.domain_events import (
    CallAnswered,
    CallEnded,
    CallRinging,
    CallUpdated,
    QueueCallerAbandoned,
    QueueCallerLeft,
)

from .calls import Call, Channel
from .config import INBOUND, INTERNAL, OUTBOUND, device_of
from .support import (
    FINAL_DIRECTIONS,
    VANISHED,
    Getter,
    Out,
    duration,
    known,
    to_float,
)
from .tables import _Tables


class _Lifecycle(_Tables):
    """Channel/call lifecycle on top of the tables."""

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
            ch.caller_num = known(get("calleridnum"))
            ch.caller_name = known(get("calleridname"))
            context = get("context")
            if context and call.direction not in FINAL_DIRECTIONS:
                self._classify(call, ch, context, get("exten") or "", t, out)
        return ch

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
        for agent in {*call.ringing, *call.connected, *call.agent_channels, *call.busy_agents}:
            self._agent_leaves(agent, call, t, out)
        call.ring_targets.clear()

    def _close_all(self, t: float, reason: str, out: Out) -> list[str]:
        closed = list(self._calls)
        for call in list(self._calls.values()):
            self._end_call(call, t, out, cause_text=reason)
        self._channels.clear()
        self._bridges.clear()
        for q in self._queues.values():
            q.order.clear()
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
        call.busy_agents.add(agent)
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
        busy: bool = True,
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
        if agent is not None and busy:
            self._agent_busy(call, agent, t, out)

    def _agent_leaves(self, agent: str, call: Call, t: float, out: Out) -> None:
        """The agent has nothing left in this call: stop ringing/talking, maybe wrap up."""
        call.ringing.pop(agent, None)
        call.connected.pop(agent, None)
        call.busy_agents.discard(agent)
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
            age = duration(get("duration")) or to_float(get("seconds"))
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
        if context and call.direction not in FINAL_DIRECTIONS:
            self._classify(call, ch, context, get("exten") or "", t, out)
        if ch.agent is not None:
            if state == "Up":
                self._agent_busy(call, ch.agent, t, out)
            elif state == "Ringing":
                self._ring(call, ch.agent, ch.device, ch.name, None, t, out)
        return ch
