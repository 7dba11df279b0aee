"""Handlers of channel-level AMI events: states, dialplan, dialing, bridges, hold, transfers."""

from __future__ import annotations

from typing import Any

from cti.domain_events import (
    CallHeld,
    CallTransferred,
    CallUnheld,
    CallUpdated,
)

from .calls import Call, Channel
from .config import INBOUND, OUTBOUND, device_of
from .lifecycle import _Lifecycle
from .support import (
    FINAL_DIRECTIONS,
    VAR_DID,
    VAR_KEEP,
    VAR_ORIGINATE,
    VAR_RECORDING,
    Getter,
    Out,
    known,
    to_int,
)


class _CallEvents(_Lifecycle):
    """AMI channel, dial, bridge and transfer events."""

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
        if call is None or call.direction in FINAL_DIRECTIONS:
            return
        context = get("context")
        if context:
            self._classify(call, ch, context, get("exten") or "", t, out)

    def _on_newcallerid(self, get: Getter, t: float, out: Out) -> None:
        ch = self._chan(get, t, out)
        if ch is None:
            return
        ch.caller_num = known(get("calleridnum"))
        ch.caller_name = known(get("calleridname"))
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
            kind = VAR_KEEP
        ch = self._chan(get, t, out)
        if ch is None:
            return
        call = self._calls.get(ch.call_id)
        if call is None:
            return
        value = get("value") or ""
        if kind == VAR_RECORDING:
            if value and value != call.recording:
                call.recording = value
                out.append(
                    CallUpdated(
                        at=t,
                        call_id=call.call_id,
                        changes={"recording": value, "recording_channel": ch.name},
                    )
                )
        elif kind == VAR_DID:
            if value and call.did is None:
                call.did = value
                out.append(CallUpdated(at=t, call_id=call.call_id, changes={"did": value}))
        elif call.variables.get(var) != value:
            call.variables[var] = value
            changes: dict[str, Any] = {"variables": dict(call.variables)}
            if kind == VAR_ORIGINATE and call.direction not in FINAL_DIRECTIONS:
                # The gateway placed this call: it is outbound from the start, though the
                # agent's phone rings before the customer's number is dialled.
                call.direction = OUTBOUND
                changes["direction"] = OUTBOUND
            out.append(CallUpdated(at=t, call_id=call.call_id, changes=changes))

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
        cause = to_int(get("cause"))
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
        if dest_uid and dest_uid in self._hungup:
            return None  # that phone already hung up (events of two channels interleave)
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
                changes={
                    "recording_active": active,
                    "recording": call.recording,
                    "recording_channel": ch.name if ch is not None else None,
                },
            )
        )

    def _on_mixmonitor_start(self, get: Getter, t: float, out: Out) -> None:
        self._mixmonitor(get, t, out, True)

    def _on_mixmonitor_stop(self, get: Getter, t: float, out: Out) -> None:
        self._mixmonitor(get, t, out, False)

    def _on_mixmonitor_mute(self, get: Getter, t: float, out: Out) -> None:
        """The recording went silent (card numbers) or came back: recordings/ keeps the
        pauses. Muting one direction only still records the other party, so only
        ``both`` counts as a pause."""
        ch = self._chan(get, t, out, create=False)
        call = self._calls.get(ch.call_id) if ch is not None else None
        if call is None or ch is None:
            return
        if (get("direction") or "both").lower() != "both":
            return
        out.append(
            CallUpdated(
                at=t,
                call_id=call.call_id,
                changes={
                    "recording_muted": (get("state") or "0") in ("1", "true", "yes", "on"),
                    "recording": call.recording,
                    "recording_channel": ch.name,
                },
            )
        )

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
        if context and call.direction not in FINAL_DIRECTIONS:
            if ch.caller_num is None:
                ch.caller_num = known(get("calleridnum"))
                ch.caller_name = known(get("calleridname"))
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
        transferer, ter_call = self._call_of(get("transfereruniqueid"), get("transfererlinkedid"))
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
