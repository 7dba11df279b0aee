"""AMI actions that read or change the PBX: calls, queues, lists, recording, variables.

Every response reproduces Asterisk's own text and field order (``manager.c``,
``app_queue.c``, ``app_mixmonitor.c``, ``db.c``), errors included, so a client that copes
with the simulator copes with a real Asterisk. Mixed into :class:`SimulatedPbx`.
"""

from __future__ import annotations

import asyncio
import re
import time

from cti.ami_message import AmiMessage
from cti.simulator.calls import CallEngine, Request, SimCall
from cti.simulator.model import Channel, PbxConfig, PbxState, QueueMember
from cti.simulator.session import Session
from cti.simulator.wire import Pairs, error, list_complete, list_start, response

_CALLERID = re.compile(r'^\s*(?:"?([^"<]*?)"?\s*)?<([^>]*)>\s*$')


def parse_callerid(value: str) -> tuple[str, str]:
    """``"Name" <num>`` / ``Name <num>`` / ``num`` -> (num, name); '<unknown>' when absent."""
    m = _CALLERID.match(value)
    if m:
        return (m.group(2) or "<unknown>", (m.group(1) or "").strip() or "<unknown>")
    value = value.strip()
    return (value or "<unknown>", "<unknown>")


class PbxActions:
    """The action handlers (``_a_<name>``); the server supplies state, engine and output."""

    state: PbxState
    engine: CallEngine
    config: PbxConfig
    time_scale: float

    def now(self) -> float:
        raise NotImplementedError

    def broadcast(self, pairs: Pairs) -> None:
        raise NotImplementedError

    def _send(self, s: Session, *messages: Pairs) -> None:
        raise NotImplementedError

    # -- calls -----------------------------------------------------------------------------

    async def _a_originate(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        channel = (m.get("Channel") or "").strip()
        if not channel:
            self._send(s, error(aid, "Channel not specified"))
            return
        exten, context = m.get("Exten") or "", m.get("Context") or ""
        if m.get("Application") is None and (not exten or not context or not m.get("Priority")):
            self._send(s, error(aid, "Originate with 'Exten' requires 'Context' and 'Priority'"))
            return
        variables: dict[str, str] = {}
        for item in m.getall("Variable"):
            for part in item.split(","):
                k, _, v = part.partition("=")
                if k:
                    variables[k.strip()] = v
        talk = float(variables.get("TALK", "6") or 6)
        timeout = float(m.get("Timeout") or 30000) / 1000.0
        cid = parse_callerid(m.get("CallerID") or "")
        async_ = (m.get("Async") or "").lower() in ("true", "yes", "1", "on")
        agent = self.state.agent_by_device(channel.removesuffix("/n"))
        call: SimCall | None = None
        if agent is not None and m.get("Application") is None:
            call = self.engine.click_to_call(
                agent.extension, exten, talk=talk, callerid=cid if cid[0] != "<unknown>" else None,
                context=context, variables=variables, action_id=aid if async_ else None,
                ring_timeout=timeout,
            )  # fmt: skip
        elif context == self.config.inbound_context and m.get("Application") is None:
            call = self.engine.inbound_call(
                cid[0], cid[1], exten, talk=talk, variables=variables,
                action_id=aid if async_ else None,
            )  # fmt: skip
        if async_:
            self._send(s, response(aid, "Originate successfully queued"))
            if call is None:
                self.engine.originate_failure(channel, context, exten, aid or "")
            return
        if call is None:
            self._send(s, error(aid, "Originate failed"))
            return
        # Synchronous originate: Asterisk answers once the first leg is up (or failed).
        waits = [
            asyncio.ensure_future(call.originated.wait()),
            asyncio.ensure_future(call.finished.wait()),
        ]
        await asyncio.wait(
            waits, timeout=(timeout + 1) * self.time_scale + 1, return_when="FIRST_COMPLETED"
        )
        for w in waits:
            w.cancel()
        if call.originated.is_set():
            self._send(s, response(aid, "Originate successfully queued"))
        else:
            self._send(s, error(aid, "Originate failed"))

    async def _a_hangup(self, s: Session, m: AmiMessage) -> None:
        name = m.get("Channel") or ""
        chan = self.state.channels.get(name)
        if chan is None:
            self._send(s, error(m.action_id, "No such channel"))
            return
        self._send(s, response(m.action_id, "Channel Hungup"))
        found = self.engine.find_call(name)
        if found is not None and not found[0].finished.is_set():
            self.engine.request(found[0], Request("hangup", name))
        else:  # a channel no script owns any more: just hang it up
            self.engine.chan_ev("HangupRequest", chan, [("Cause", "16")])
            self.engine.hangup_channel(chan, 16)

    async def _a_redirect(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        name = m.get("Channel") or ""
        for key, msg in (
            ("Channel", "Channel not specified"),
            ("Context", "Context not specified"),
            ("Exten", "Exten not specified"),
            ("Priority", "Priority not specified"),
        ):
            if not m.get(key):
                self._send(s, error(aid, msg))
                return
        found = self.engine.find_call(name)
        if name not in self.state.channels or found is None:
            self._send(s, error(aid, f"Channel does not exist: {name}"))
            return
        if found[0].phase not in ("queued", "ringing", "talking"):
            self._send(s, error(aid, "Redirect failed"))
            return
        self._send(s, response(aid, "Redirect successful"))
        self.engine.request(
            found[0], Request("redirect", name, m.get("Exten") or "", m.get("Context") or "")
        )

    async def _transfer(self, s: Session, m: AmiMessage, kind: str) -> None:
        aid = m.action_id
        name, exten = m.get("Channel") or "", m.get("Exten") or ""
        if not name:
            self._send(s, error(aid, "No channel specified"))
            return
        if not exten:
            self._send(s, error(aid, "No extension specified"))
            return
        found = self.engine.find_call(name)
        if name not in self.state.channels or found is None:
            self._send(s, error(aid, "Channel specified does not exist"))
            return
        if kind == "blind" and found[0].phase != "talking":
            self._send(s, error(aid, "Transfer invalid"))
            return
        ok = "Transfer succeeded" if kind == "blind" else "Atxfer successfully queued"
        self._send(s, response(aid, ok))
        if found[0].phase == "talking":
            self.engine.request(found[0], Request(kind, name, exten, m.get("Context") or ""))

    async def _a_blindtransfer(self, s: Session, m: AmiMessage) -> None:
        await self._transfer(s, m, "blind")

    async def _a_atxfer(self, s: Session, m: AmiMessage) -> None:
        await self._transfer(s, m, "atxfer")

    # -- queues ----------------------------------------------------------------------------

    async def _a_queueadd(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        qname, iface = m.get("Queue") or "", m.get("Interface") or ""
        if not qname:
            self._send(s, error(aid, "'Queue' not specified."))
            return
        if not iface:
            self._send(s, error(aid, "'Interface' not specified."))
            return
        queue = self.state.queues.get(qname)
        if queue is None:
            self._send(s, error(aid, "Unable to add interface to queue: No such queue"))
            return
        if iface in queue.members:
            self._send(s, error(aid, "Unable to add interface: Already there"))
            return
        paused = (m.get("Paused") or "").lower() in ("true", "yes", "1", "on")
        member = QueueMember(
            interface=iface,
            name=m.get("MemberName") or iface,
            state_interface=m.get("StateInterface") or iface.removesuffix("/n"),
            penalty=int(m.get("Penalty") or 0),
            dynamic=True,
            paused=paused,
            paused_reason=(m.get("Reason") or "") if paused else "",
            login_time=int(self.now()),
        )
        queue.members[iface] = member
        self.state.device_states.setdefault(member.state_interface, "NOT_INUSE")
        self._send(s, response(aid, "Added interface to queue"))
        self.broadcast(self.state.member_status_event(queue, member, "QueueMemberAdded"))

    async def _a_queueremove(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        qname, iface = m.get("Queue") or "", m.get("Interface") or ""
        if not qname or not iface:
            self._send(s, error(aid, "Need 'Queue' and 'Interface' parameters."))
            return
        queue = self.state.queues.get(qname)
        if queue is None:
            self._send(s, error(aid, "Unable to remove interface from queue: No such queue"))
            return
        member = queue.members.get(iface)
        if member is None:
            self._send(s, error(aid, "Unable to remove interface: Not there"))
            return
        if not member.dynamic:
            self._send(s, error(aid, "Member not dynamic"))
            return
        del queue.members[iface]
        self._send(s, response(aid, "Removed interface from queue"))
        self.broadcast(self.state.member_status_event(queue, member, "QueueMemberRemoved"))

    async def _a_queuepause(self, s: Session, m: AmiMessage) -> None:
        aid = m.action_id
        iface, paused_s = m.get("Interface") or "", m.get("Paused") or ""
        if not iface or not paused_s:
            self._send(s, error(aid, "Need 'Interface' and 'Paused' parameters."))
            return
        paused = paused_s.lower() in ("true", "yes", "1", "on", "y", "t")
        qname = m.get("Queue") or ""
        hits = [
            (q, q.members[iface])
            for q in self.state.queues.values()
            if (not qname or q.name == qname) and iface in q.members
        ]
        if not hits:
            self._send(s, error(aid, "Interface not found"))
            return
        self._send(
            s,
            response(
                aid,
                "Interface paused successfully" if paused else "Interface unpaused successfully",
            ),
        )
        for queue, member in hits:
            member.paused = paused
            member.paused_reason = (m.get("Reason") or "") if paused else ""
            if paused:
                member.last_pause = int(self.now())
            self.broadcast(self.state.member_status_event(queue, member, "QueueMemberPause"))

    async def _a_queuestatus(self, s: Session, m: AmiMessage) -> None:
        self._send(
            s, *self.state.queue_status(m.action_id, self.now(), m.get("Queue"), m.get("Member"))
        )

    async def _a_queuesummary(self, s: Session, m: AmiMessage) -> None:
        self._send(s, *self.state.queue_summary(m.action_id, self.now(), m.get("Queue")))

    # -- channel lists and state -----------------------------------------------------------

    async def _a_coreshowchannels(self, s: Session, m: AmiMessage) -> None:
        self._send(s, *self.state.core_show_channels(m.action_id, self.now()))

    async def _a_status(self, s: Session, m: AmiMessage) -> None:
        name = m.get("Channel") or None
        if name and name not in self.state.channels:
            self._send(s, error(m.action_id, "No such channel"))
            return
        self._send(s, *self.state.status(m.action_id, self.now(), name))

    async def _a_devicestatelist(self, s: Session, m: AmiMessage) -> None:
        self._send(s, *self.state.device_state_list(m.action_id))

    async def _a_extensionstatelist(self, s: Session, m: AmiMessage) -> None:
        if not self.config.agents:
            self._send(s, error(m.action_id, "No dialplan hints are available"))
            return
        self._send(s, *self.state.extension_state_list(m.action_id))

    async def _a_corestatus(self, s: Session, m: AmiMessage) -> None:
        start = time.localtime(self.state.started)
        self._send(
            s,
            response(
                m.action_id,
                None,
                extra=[
                    ("CoreStartupDate", time.strftime("%Y-%m-%d", start)),
                    ("CoreStartupTime", time.strftime("%H:%M:%S", start)),
                    ("CoreReloadDate", time.strftime("%Y-%m-%d", start)),
                    ("CoreReloadTime", time.strftime("%H:%M:%S", start)),
                    ("CoreCurrentCalls", str(self.state.active_calls())),
                    ("CoreProcessedCalls", str(self.state.processed_calls)),
                ],
            ),
        )

    async def _a_command(self, s: Session, m: AmiMessage) -> None:
        cmd = (m.get("Command") or "").strip()
        if not cmd:
            self._send(s, error(m.action_id, "No command provided"))
            return
        if cmd == "core show version":
            lines = [f"Asterisk {self.config.asterisk_version} (SIMULATED PBX)"]
        elif cmd == "core show channels concise":
            lines = [
                f"{c.name}!{c.context}!{c.exten}!{c.priority}!{c.state}!{c.application}!"
                f"{c.app_data}!{c.caller_num}!!!3!0!{c.bridge_id}!{c.uniqueid}"
                for c in self.state.channels.values()
            ]
        else:
            lines = [
                f"No such command '{cmd}' (type 'core show help {cmd}' for other possible commands)"
            ]
        self._send(
            s,
            response(
                m.action_id, "Command output follows", extra=[("Output", line) for line in lines]
            ),
        )

    # -- recording -------------------------------------------------------------------------

    def _channel_or_error(self, s: Session, m: AmiMessage) -> Channel | None:
        name = m.get("Channel") or ""
        if not name:
            self._send(s, error(m.action_id, "No channel specified"))
            return None
        chan = self.state.channels.get(name)
        if chan is None:
            self._send(s, error(m.action_id, "No such channel"))
        return chan

    async def _a_mixmonitor(self, s: Session, m: AmiMessage) -> None:
        chan = self._channel_or_error(s, m)
        if chan is None:
            return
        file = m.get("File") or f"{chan.uniqueid}.wav"
        path = file if file.startswith("/") else f"{self.config.spool}/{file}"
        self._send(s, response(m.action_id, None))
        chan.mixmonitor = path
        self.engine.setvar(chan, "MIXMONITOR_FILENAME", path, always=True)
        self.engine.chan_ev("MixMonitorStart", chan)

    async def _a_stopmixmonitor(self, s: Session, m: AmiMessage) -> None:
        chan = self._channel_or_error(s, m)
        if chan is None:
            return
        if not chan.mixmonitor:
            self._send(s, error(m.action_id, "Could not stop monitoring channel"))
            return
        chan.mixmonitor = ""
        self._send(s, response(m.action_id, None))
        self.engine.chan_ev("MixMonitorStop", chan)

    async def _a_mixmonitormute(self, s: Session, m: AmiMessage) -> None:
        chan = self._channel_or_error(s, m)
        if chan is None:
            return
        direction = (m.get("Direction") or "both").lower()
        if direction not in ("read", "write", "both"):
            self._send(
                s, error(m.action_id, "Invalid direction specified. Must be read, write or both")
            )
            return
        if not m.get("State"):
            self._send(s, error(m.action_id, "No state specified"))
            return
        if not chan.mixmonitor:  # app_mixmonitor.c: no MixMonitor audiohook on the channel
            self._send(s, error(m.action_id, "Cannot set mute flag"))
            return
        state = (m.get("State") or "").lower() in ("1", "true", "yes", "on")
        self._send(s, response(m.action_id, None))
        self.engine.chan_ev(
            "MixMonitorMute", chan, [("Direction", direction), ("State", "1" if state else "0")]
        )

    # -- variables and AstDB ---------------------------------------------------------------

    async def _a_setvar(self, s: Session, m: AmiMessage) -> None:
        var = m.get("Variable") or ""
        if not var:
            self._send(s, error(m.action_id, "No variable specified"))
            return
        name = m.get("Channel") or ""
        if name:
            chan = self.state.channels.get(name)
            if chan is None:
                self._send(s, error(m.action_id, "No such channel"))
                return
            self._send(s, response(m.action_id, "Variable Set"))
            self.engine.setvar(chan, var, m.get("Value") or "", always=True)
            return
        self.state.globals[var] = m.get("Value") or ""
        self._send(s, response(m.action_id, "Variable Set"))

    async def _a_getvar(self, s: Session, m: AmiMessage) -> None:
        var = m.get("Variable") or ""
        if not var:
            self._send(s, error(m.action_id, "No variable specified"))
            return
        name = m.get("Channel") or ""
        value = ""
        if name:
            chan = self.state.channels.get(name)
            if chan is None:
                self._send(s, error(m.action_id, "No such channel"))
                return
            special = {
                "CALLERID(num)": chan.caller_num,
                "CALLERID(name)": chan.caller_name,
                "UNIQUEID": chan.uniqueid,
                "CHANNEL": chan.name,
                "CHANNEL(linkedid)": chan.linkedid,
                "CONNECTEDLINE(num)": chan.connected_num,
            }
            value = special.get(var, chan.variables.get(var.lstrip("_"), ""))
        else:
            value = self.state.globals.get(var, "")
        self._send(s, response(m.action_id, None, extra=[("Variable", var), ("Value", value)]))

    async def _a_dbput(self, s: Session, m: AmiMessage) -> None:
        family, key = m.get("Family") or "", m.get("Key") or ""
        if not family:
            self._send(s, error(m.action_id, "No family specified"))
        elif not key:
            self._send(s, error(m.action_id, "No key specified"))
        else:
            self.state.db[f"{family}/{key}"] = m.get("Val") or ""
            self._send(s, response(m.action_id, "Updated database successfully"))

    async def _a_dbget(self, s: Session, m: AmiMessage) -> None:
        family, key = m.get("Family") or "", m.get("Key") or ""
        if not family:
            self._send(s, error(m.action_id, "No family specified."))
            return
        if not key:
            self._send(s, error(m.action_id, "No key specified."))
            return
        val = self.state.db.get(f"{family}/{key}")
        if val is None:
            self._send(s, error(m.action_id, "Database entry not found"))
            return
        aid = m.action_id
        item: Pairs = [("Event", "DBGetResponse"), ("Family", family), ("Key", key), ("Val", val)]
        if aid:
            item.append(("ActionID", aid))
        self._send(
            s, list_start(aid, "Result will follow"), item, list_complete("DBGetComplete", aid, 1)
        )

    async def _a_dbdel(self, s: Session, m: AmiMessage) -> None:
        family, key = m.get("Family") or "", m.get("Key") or ""
        if not family:
            self._send(s, error(m.action_id, "No family specified."))
        elif not key:
            self._send(s, error(m.action_id, "No key specified."))
        elif self.state.db.pop(f"{family}/{key}", None) is None:
            self._send(s, error(m.action_id, "Database entry could not be deleted"))
        else:
            self._send(s, response(m.action_id, "Key deleted successfully"))
