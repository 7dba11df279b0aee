"""Acting on the PBX for a user: permission checks first, then the AMI action.

An agent acts on their own calls and their own phone; a supervisor on the calls and agents
of their teams; an admin on everything. A refusal from the PBX, a PBX that is down or one
that does not answer each come back as a clear error.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from crm import audit
from crm.db import Database
from crm.errors import CrmError, NotFound, ValidationFailed
from crm.permissions import PermissionDenied, Principal
from crm.services import records
from crm.services.entities import SPECS
from crm.services.phones import phones_of
from cti import actions
from cti.ami_message import AmiMessage
from cti.callstate import CallStateMachine
from cti.directory import DeviceDirectory, agent_id, user_id_of

log = logging.getLogger("tamas.cti")


class PbxError(CrmError):
    """The PBX refused the action (502), is down (503) or did not answer in time (504)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class Link(Protocol):
    pbx_name: str

    async def action(
        self, name: str, fields: Any, *, timeout: float | None = None
    ) -> AmiMessage: ...


class RecordingListener(Protocol):
    """recordings/ hears of what users do to a call's recording (the AMI events follow
    too; this adds who did it) and names the files the gateway starts."""

    def file_name(self, pbx: str, call_id: str) -> str: ...

    async def agent_action(
        self,
        pbx: str,
        call_id: str,
        op: str,
        source: str | None,
        channels: list[str],
        user_id: int,
        at: float,
    ) -> None: ...


RECORDING_OPS = ("start", "stop", "pause", "resume")


@dataclass
class Pbx:
    """One PBX as the control layer sees it: its link and its live call state."""

    name: str
    link: Link
    machine: CallStateMachine
    held_here: bool = True
    """False: another gateway instance holds the AMI link (tamas/pbx_links.py); the machine
    here is empty and actions on this PBX are carried out there (tamas/cluster/forward.py)."""


_ids = itertools.count(1)


class CtiControl:
    def __init__(
        self,
        db: Database,
        pbxs: Mapping[str, Pbx],
        directory: DeviceDirectory,
        region: str,
        plan: actions.DialPlan | None = None,
    ) -> None:
        self.db = db
        self.pbxs = pbxs
        self.directory = directory
        self.region = region
        self.plan = plan or actions.DialPlan()
        self.recording_listener: RecordingListener | None = None

    # -- helpers ----------------------------------------------------------------------
    def find(self, name: str | None) -> Pbx | None:
        """The PBX a request names, else the default one (the first configured); None when
        there is no such PBX. Public so the cluster forwarding picks the same PBX."""
        if name is None:
            return next(iter(self.pbxs.values()), None)
        return self.pbxs.get(name)

    def _pbx(self, name: str | None) -> Pbx:
        pbx = self.find(name)
        if pbx is None:
            if name is None:
                raise PbxError("no PBX is configured", 503)
            raise NotFound(f"no PBX named {name!r}")
        return pbx

    async def _send(self, pbx: Pbx, action: actions.PbxAction) -> AmiMessage:
        from cti.ami_link import AmiActionError, AmiNotConnected, AmiTimeout

        try:
            return await pbx.link.action(action.name, action.fields)
        except AmiActionError as exc:
            raise PbxError(f"PBX {pbx.name} refused {action.name}: {exc}", 502) from None
        except AmiNotConnected:
            raise PbxError(f"PBX {pbx.name} is not connected", 503) from None
        except AmiTimeout as exc:
            raise PbxError(str(exc), 504) from None

    def _device(self, user_id: int) -> str:
        devices = self.directory.devices_of(user_id)
        if not devices:
            raise ValidationFailed.one("device", "this user has no phone (device) configured")
        return devices[0]

    def _may_act_for(self, p: Principal, user_id: int) -> bool:
        if p.is_admin or user_id == p.user_id:
            return True
        return p.scope == "team" and user_id in p.teammate_ids

    def _call(self, pbx: Pbx, call_id: str) -> Any:
        call = pbx.machine.calls.get(call_id)
        if call is None:
            raise NotFound(f"no call {call_id} in progress on {pbx.name}")
        return call

    def _require_call(self, p: Principal, pbx: Pbx, call_id: str) -> Any:
        """The call, if the principal may act on it: their own, or their team's."""
        call = self._call(pbx, call_id)
        involved = {user_id_of(a) for a in [*call.agents_rung, *call.agents_talked, *call.ringing]}
        involved.discard(None)
        if p.is_admin or any(self._may_act_for(p, u) for u in involved if u is not None):
            return call
        raise PermissionDenied("you may only act on your own calls (or your team's)")

    def _channel_of(self, pbx: Pbx, call: Any, user_id: int | None) -> str:
        """The agent's channel of a call (``user_id`` None: the customer's)."""
        channels = pbx.machine.channels
        if user_id is None:
            uid = call.customer_uid
            if uid and uid in channels:
                return str(channels[uid].name)
            raise PbxError("the customer's channel of this call is not known", 409)
        for uid in call.agent_channels.get(agent_id(user_id), ()):
            if uid in channels:
                return str(channels[uid].name)
        raise PbxError("you are not on this call", 409)

    async def _audit(self, p: Principal, action: str, **detail: Any) -> None:
        async with self.db.session() as s:
            audit.record(s, p.user_id, action, None, None, {}, **detail)

    # -- actions ----------------------------------------------------------------------
    async def click_to_call(
        self,
        p: Principal,
        entity: str,
        record_id: int,
        phone_index: int = 0,
        pbx_name: str | None = None,
        caller_id: str | None = None,
        auto_answer: bool = False,
    ) -> dict[str, Any]:
        """Call a customer record's phone from the user's own device."""
        if entity not in ("contact", "lead", "account"):
            raise ValidationFailed.one("entity", "calls start from a contact, lead or account")
        async with self.db.session() as s:
            rec = await records.get(s, p, SPECS[entity], record_id)
            if rec.do_not_call:
                raise PbxError("this customer asked not to be called (do-not-call)", 409)
            numbers = (await phones_of(s, entity, [record_id])).get(record_id, [])
            if not 0 <= phone_index < len(numbers):
                raise ValidationFailed.one("phone_index", "the record has no such phone")
            e164 = numbers[phone_index].e164
        pbx = self._pbx(pbx_name)
        device = self._device(p.user_id)
        hint = f"c2c-{next(_ids)}"
        try:
            action = actions.click_to_call(
                device,
                e164,
                self.region,
                hint,
                caller_id=caller_id,
                record=(entity, record_id),
                agent=agent_id(p.user_id),
                auto_answer=auto_answer,
                plan=self.plan,
            )
        except ValueError as exc:
            raise ValidationFailed.one("number", str(exc)) from None
        await self._send(pbx, action)
        await self._audit(
            p, "click_to_call", entity=entity, record_id=record_id, device=device, pbx=pbx.name
        )
        return {"pbx": pbx.name, "device": device, "originate_id": hint}

    async def originate_for_agent(
        self,
        user_id: int,
        e164: str,
        record: tuple[str, int],
        *,
        variables: Mapping[str, str] | None = None,
        pbx_name: str | None = None,
        caller_id: str | None = None,
        auto_answer: bool = False,
        timeout_s: int = 30,
        hint: str | None = None,
    ) -> dict[str, Any]:
        """The click-to-call path for the outbound dialer (cti/dialer): ring the agent's
        phone, then the customer's number, with the record and campaign variables on the
        call. No principal: the dialer decided this agent takes this customer, and checks
        do-not-call itself right before calling this; each attempt is kept on its list."""
        pbx = self._pbx(pbx_name)
        device = self._device(user_id)
        hint = hint or f"c2c-{next(_ids)}"
        try:
            action = actions.click_to_call(
                device,
                e164,
                self.region,
                hint,
                caller_id=caller_id,
                record=record,
                agent=agent_id(user_id),
                auto_answer=auto_answer,
                plan=self.plan,
                timeout_s=timeout_s,
                extra_variables=variables,
            )
        except ValueError as exc:
            raise ValidationFailed.one("number", str(exc)) from None
        await self._send(pbx, action)
        return {"pbx": pbx.name, "device": device, "originate_id": hint}

    async def hangup(self, p: Principal, pbx_name: str | None, call_id: str) -> None:
        pbx = self._pbx(pbx_name)
        call = self._require_call(p, pbx, call_id)
        channel = self._channel_of(pbx, call, None) if call.customer_uid else None
        if channel is None:
            for uids in call.agent_channels.values():
                for uid in uids:
                    channel = pbx.machine.channels[uid].name
        if channel is None:
            raise PbxError("no channel of this call is known", 409)
        await self._send(pbx, actions.hangup(channel))
        await self._audit(p, "hangup", pbx=pbx.name, call_id=call_id)

    async def transfer(
        self, p: Principal, pbx_name: str | None, call_id: str, target: str, kind: str
    ) -> None:
        if not target or not all(c.isdigit() or c in "*#+" for c in target):
            raise ValidationFailed.one("target", "an extension or number to transfer to")
        pbx = self._pbx(pbx_name)
        call = self._require_call(p, pbx, call_id)
        if kind == "blind":
            await self._send(
                pbx, actions.blind_transfer(self._channel_of(pbx, call, None), target, self.plan)
            )
        elif kind == "attended":
            await self._send(
                pbx,
                actions.attended_transfer(
                    self._channel_of(pbx, call, p.user_id), target, self.plan
                ),
            )
        else:
            raise ValidationFailed.one("kind", "blind or attended")
        await self._audit(p, "transfer", pbx=pbx.name, call_id=call_id, target=target, kind=kind)

    async def hold(self, p: Principal, pbx_name: str | None, call_id: str, on: bool) -> None:
        pbx = self._pbx(pbx_name)
        self._require_call(p, pbx, call_id)
        try:
            action = actions.hold(self._device(p.user_id), on)
        except ValueError as exc:
            raise PbxError(str(exc), 409) from None
        await self._send(pbx, action)

    async def queue_membership(
        self, p: Principal, user_id: int, queue: str, login: bool, pbx_name: str | None = None
    ) -> None:
        if not self._may_act_for(p, user_id):
            raise PermissionDenied("you may only log in or out yourself (or your team)")
        pbx = self._pbx(pbx_name)
        for device in self.directory.devices_of(user_id)[:1] or [self._device(user_id)]:
            action = (
                actions.queue_add(queue, device, agent_id(user_id))
                if login
                else actions.queue_remove(queue, device)
            )
            await self._send(pbx, action)
        await self._audit(
            p, "queue_login" if login else "queue_logout", agent_user_id=user_id, queue=queue
        )

    async def pause(
        self,
        p: Principal,
        user_id: int,
        paused: bool,
        reason: str = "",
        queue: str | None = None,
        pbx_name: str | None = None,
    ) -> None:
        if not self._may_act_for(p, user_id):
            raise PermissionDenied("you may only pause yourself (or your team's agents)")
        pbx = self._pbx(pbx_name)
        await self._send(pbx, actions.queue_pause(self._device(user_id), paused, reason, queue))
        await self._audit(p, "pause" if paused else "unpause", agent_user_id=user_id, reason=reason)

    async def spy(
        self, p: Principal, pbx_name: str | None, call_id: str, mode: str
    ) -> dict[str, Any]:
        if p.scope not in ("team", "all"):
            raise PermissionDenied("listening to calls is for supervisors")
        pbx = self._pbx(pbx_name)
        call = self._require_call(p, pbx, call_id)
        agents = [user_id_of(a) for a in [*call.connected, *call.agents_talked]]
        target_user = next((u for u in agents if u is not None), None)
        if target_user is None:
            raise PbxError("no agent is talking on this call", 409)
        channel = self._channel_of(pbx, call, target_user)
        try:
            action = actions.spy(self._device(p.user_id), channel, mode, self.plan)
        except ValueError as exc:
            raise ValidationFailed.one("mode", str(exc)) from None
        await self._send(pbx, action)
        await self._audit(
            p, f"spy_{mode}", pbx=pbx.name, call_id=call_id, agent_user_id=target_user
        )
        return {"mode": mode, "channel": channel}

    async def recording(
        self, p: Principal, pbx_name: str | None, call_id: str, op: str
    ) -> dict[str, Any]:
        """Start, stop, pause or resume the recording of a call the user may act on.

        Pause mutes every MixMonitor of the call (``MixMonitorMute``, both directions):
        Asterisk writes silence, so a card number said meanwhile is never in any file. It
        succeeds only if at least one recording was really muted.
        """
        if op not in RECORDING_OPS:
            raise ValidationFailed.one("op", "start, stop, pause or resume")
        pbx = self._pbx(pbx_name)
        call = self._require_call(p, pbx, call_id)
        listener = self.recording_listener
        source: str | None = None
        done: list[str] = []
        if op == "start":
            if call.recording_active:
                raise PbxError("this call is already being recorded", 409)
            # The customer's channel lives through transfers between agents, so one file
            # covers the whole call.
            try:
                channel = self._channel_of(pbx, call, None)
            except PbxError:
                channel = self._channel_of(pbx, call, p.user_id)
            source = (
                listener.file_name(pbx.name, call_id)
                if listener is not None
                else f"tamas-{call_id}-{int(time.time() * 1000)}.wav"
            )
            await self._send(pbx, actions.mixmonitor(channel, source))
            done.append(channel)
        else:
            channels = pbx.machine.channels
            names = [str(channels[uid].name) for uid in call.channels if uid in channels]
            for name in names:
                action = (
                    actions.stop_mixmonitor(name)
                    if op == "stop"
                    else actions.mixmonitor_mute(name, op == "pause")
                )
                try:
                    await self._send(pbx, action)
                except PbxError as exc:
                    if exc.status != 502:  # down or silent PBX: say so, do not guess
                        raise
                    continue  # no recording on this channel
                done.append(name)
            if not done:
                raise PbxError("no recording is running on this call", 409)
        await self._audit(
            p, f"recording_{op}", pbx=pbx.name, call_id=call_id, channels=done, file=source
        )
        if listener is not None:
            await listener.agent_action(pbx.name, call_id, op, source, done, p.user_id, time.time())
        return {"op": op, "channels": done, "file": source}
