"""Handlers of queue, agent, device and PBX-level AMI events (and the snapshot list items)."""

from __future__ import annotations

from collections.abc import Iterable

from cti.ami_message import AmiMessage
from cti.domain_events import (
    PbxResynced,
    QueueCallerAbandoned,
    QueueCallerJoined,
    QueueCallerLeft,
)

from .agents import (
    device_state_from_queue_status,
)
from .calls import Call, Channel
from .config import INBOUND, device_of
from .lifecycle import _Lifecycle
from .queues import QueueState
from .support import (
    ANSWERED_OUTCOMES,
    EXTENSION_STATUS,
    OPEN_OUTCOMES,
    PBX_RESTART,
    Getter,
    Out,
    getter,
    known,
    to_float,
    to_int,
)


class _QueueEvents(_Lifecycle):
    """AMI queue, member, device and PBX events."""

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
        q.add_waiting(ch.uid, t, call.call_id)
        if ch.waiting_in is None:
            ch.waiting_in = {q.name}
        else:
            ch.waiting_in.add(q.name)
        if call.direction in (None, INBOUND) and call.external_raw is None:
            self._set_external(call, get("calleridnum"))
            if call.caller_name is None:
                call.caller_name = known(get("calleridname"))
        self._dirty.add(q.name)
        out.append(
            QueueCallerJoined(
                at=t,
                queue=q.name,
                call_id=call.call_id,
                channel=ch.name,
                position=to_int(get("position")),
                count=to_int(get("count")),
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
        elif outcome in ANSWERED_OUTCOMES:
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
                position=to_int(get("position")),
                count=to_int(get("count")),
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
        hold = to_float(get("holdtime"))
        wait = hold if hold is not None else self._since(entry[0] if entry else None, t)
        self._count_abandon(call, q, wait)
        out.append(
            QueueCallerAbandoned(
                at=t,
                queue=q.name,
                call_id=call.call_id,
                channel=ch.name,
                position=to_int(get("position")),
                original_position=to_int(get("originalposition")),
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
        elif dest_uid and dest_uid not in self._hungup:
            call.ring_targets[dest_uid] = agent
        return ch, call, q, agent, dest, dest_name

    def _on_agentcalled(self, get: Getter, t: float, out: Out) -> None:
        found = self._member_event(get, t, out)
        if found is None:
            return
        _, call, q, agent, _, dest_name = found
        self._queue_seen(call, q)
        if get("destuniqueid") in self._hungup:
            return  # the member's phone is already gone: it does not ring any more
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
        if outcome in OPEN_OUTCOMES:
            q.answered += 1
            call.queue_outcomes[q.name] = "answered"
            entry = q.waiting.pop(ch.uid, None)
            if ch.waiting_in is not None:
                ch.waiting_in.discard(q.name)
            hold = to_float(get("holdtime"))
            wait = hold if hold is not None else self._since(entry[0] if entry else None, t)
            if wait is not None:
                q.total_wait += wait
                if wait <= q.sl_seconds:
                    q.answered_within_sl += 1
                call.wait_seconds = wait
            call.wrapup_queue[agent] = q.name
            self._dirty.add(q.name)
        device = device_of(dest_name) if dest_name else None
        gone = get("destuniqueid") in self._hungup
        self._answered(call, agent, device, dest_name or None, t, out, busy=not gone)

    def _on_agentcomplete(self, get: Getter, t: float, out: Out) -> None:
        found = self._member_event(get, t, out)
        if found is None:
            return
        _, call, q, agent, _, _ = found
        if call.queue_outcomes.get(q.name) == "answered":
            call.queue_outcomes[q.name] = "completed"
            q.completed += 1
            talk = to_float(get("talktime"))
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
            self._members_changed((queue,))
        paused = get("paused")
        if paused is not None:
            a.queues[queue] = (get("pausedreason") or "") if paused == "1" else None
        elif queue not in a.queues:
            a.queues[queue] = None
        wrapup = to_float(get("wrapuptime"))
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
        self._members_changed((queue,))
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
            wait = to_float(get("wait")) or 0.0
            q.add_waiting(ch.uid, t - wait, call.call_id)
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
            get = getter(msg)
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
                q.member_counts = None
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

    def _on_devicestate(self, get: Getter, t: float, out: Out) -> None:
        device = get("device")
        if not device:
            return
        agent = self._agent_for_device(device)
        if agent is None:
            return
        self._device_state(agent, device, get("state"), t, out)

    def _device_state(self, agent: str, device: str, state: str | None, t: float, out: Out) -> None:
        a = self._agent(agent, t)
        if a.device is None:
            a.device = device
        if state != a.device_state:
            a.device_state = state
            self._touch(a, t, out)

    def _on_extensionstatus(self, get: Getter, t: float, out: Out) -> None:
        hint = get("hint") or ""
        status = get("status")
        if not hint or status not in EXTENSION_STATUS:
            return
        state = EXTENSION_STATUS[status]
        for part in hint.split("&"):
            device = part.strip()
            agent = self._agent_for_device(device) if device else None
            if agent is not None:
                self._device_state(agent, device, state, t, out)
                return

    def _on_fullybooted(self, get: Getter, t: float, out: Out) -> None:
        uptime = to_float(get("uptime"))
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
