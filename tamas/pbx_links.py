"""The PBX links of this gateway instance.

One instance (no Redis): a :class:`~cti.service.PbxService` per configured PBX, started at
once, as always. Several instances (``TAMAS_REDIS_URL``): each PBX has a lease in Redis
(:mod:`tamas.cluster.lease`) and only its holder runs the service; the others keep a standby
entry (an empty call-state machine and a link that says where the PBX is held) and take
over when the holder's lease runs out. A takeover starts a *fresh* service: the link logs
in and resyncs from the PBX's own lists, and the call log closes calls that ended while no
instance was listening (``PbxResynced.open_call_ids``).

``pbxs`` is the mapping :class:`cti.control.CtiControl` reads; entries are swapped in place
(``Pbx.held_here`` says which kind an entry is).

``agent.state`` events only say what changes, so an instance that starts after the holder
has linked would not know any agent's state (routing would take every agent for logged out,
wallboards would show none) until each one changed. It therefore asks once, at start
(:class:`AgentStatesWanted`, through the cluster bus), and every holder answers with the
current state of each agent of its PBXs as ``agent.state`` events, which reach every
instance like any other event (the holder's own subscribers see them as repeats of what
they know).
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from cti import event_codec
from cti.ami_link import AmiNotConnected
from cti.ami_message import AmiMessage
from cti.callstate import CallStateConfig, CallStateMachine
from cti.control import Pbx
from cti.service import PbxService
from tamas.bus import EventBus, is_local
from tamas.cluster.lease import LeaseKeeper, RedisLease, instance_of, lease_key, make_token
from tamas.config import AmiServer

log = logging.getLogger("tamas.cti")

AGENT_STATES_WANTED = "cluster.agent_states_wanted"


@dataclass(frozen=True, slots=True)
class AgentStatesWanted:
    """An instance that just started asks the link holders for every agent's state."""

    at: float
    type: str = AGENT_STATES_WANTED
    origin: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "at": self.at}


event_codec.register(AgentStatesWanted, in_envelope=False)


class StandbyLink:
    """The link entry of a PBX whose AMI link another instance holds: actions are refused
    at once (503 from the control API), never queued."""

    def __init__(self, pbx_name: str, holder: str | None = None) -> None:
        self.pbx_name = pbx_name
        self.holder = holder
        self.state = "standby"

    async def action(self, name: str, fields: Any, *, timeout: float | None = None) -> AmiMessage:
        where = f"gateway instance {self.holder}" if self.holder else "no gateway instance yet"
        raise AmiNotConnected(
            f"PBX {self.pbx_name} is not linked from this instance (held by {where})"
        )


@dataclass
class LinkSlot:
    """One configured PBX on this instance."""

    server: AmiServer
    service: PbxService | None = None
    keeper: LeaseKeeper | None = None
    standby: StandbyLink | None = None
    retired_events: int = 0
    """AMI events counted by services this instance ran before (metrics stay monotonic)."""
    takeovers: int = 0
    started_at: float | None = None


@dataclass(frozen=True)
class LinkStatus:
    pbx: str
    state: str
    """connecting / connected / resyncing / up / down, or standby (held elsewhere)."""
    held_here: bool
    holder: str | None
    """Instance id holding the link (this one's when held here; None: nobody yet)."""
    ami_events: int
    open_calls: int


@dataclass
class PbxLinks:
    servers: list[AmiServer]
    bus: EventBus
    config: CallStateConfig
    pbxs: MutableMapping[str, Pbx]
    instance: str = "local"
    redis: Any = None
    """A ``redis.asyncio.Redis``: leases on; None: one instance holds every link."""
    prefix: str = "tamas"
    lease_ttl: float = 5.0
    slots: dict[str, LinkSlot] = field(default_factory=dict)

    @property
    def clustered(self) -> bool:
        return self.redis is not None

    async def start(self) -> None:
        for server in self.servers:
            slot = LinkSlot(server)
            self.slots[server.name] = slot
            if self.redis is None:
                await self._start_service(slot)
                continue
            slot.standby = StandbyLink(server.name)
            self.pbxs[server.name] = self._standby_entry(slot)
            lease = RedisLease(
                self.redis,
                lease_key(self.prefix, server.name),
                make_token(self.instance),
                self.lease_ttl,
            )

            async def acquired(slot: LinkSlot = slot) -> None:
                await self._start_service(slot)

            async def lost(slot: LinkSlot = slot) -> None:
                await self._stop_service(slot)

            slot.keeper = LeaseKeeper(lease, acquired, lost, name=f"pbx:{server.name}")
            # First round now, so a lone instance links at once instead of after a tick.
            await slot.keeper.step()
            slot.keeper.start()
        if self.redis is not None:
            self.bus.subscribe("states-wanted", self._agent_states_wanted, AGENT_STATES_WANTED)
            self.bus.publish(AgentStatesWanted(time.time()))

    async def _agent_states_wanted(self, event: Any) -> None:
        """Another instance started: tell it the state of every agent of our PBXs."""
        if is_local(event):
            return
        for slot in self.slots.values():
            if slot.service is not None:
                slot.service.publish_agent_states()

    def _standby_entry(self, slot: LinkSlot) -> Pbx:
        assert slot.standby is not None
        return Pbx(slot.server.name, slot.standby, CallStateMachine(self.config), held_here=False)

    async def stop(self) -> None:
        for slot in self.slots.values():
            if slot.keeper is not None:
                await slot.keeper.stop()  # stops the service, then releases the lease
            else:
                await self._stop_service(slot)

    async def _start_service(self, slot: LinkSlot) -> None:
        if slot.service is not None:
            return
        svc = PbxService(slot.server, self.bus, self.config)
        slot.service = svc
        slot.takeovers += 1
        slot.started_at = time.time()
        self.pbxs[slot.server.name] = Pbx(slot.server.name, svc.link, svc.machine)
        await svc.start()
        log.info(
            "pbx link started here",
            extra={"pbx": slot.server.name, "instance": self.instance, "cluster": self.clustered},
        )

    async def _stop_service(self, slot: LinkSlot) -> None:
        svc, slot.service = slot.service, None
        if svc is None:
            return
        if slot.standby is not None:
            self.pbxs[slot.server.name] = self._standby_entry(slot)
        await svc.stop()
        slot.retired_events += svc.link.counters.events
        log.info("pbx link stopped here", extra={"pbx": slot.server.name})

    def status(self) -> list[LinkStatus]:
        out = []
        for name, slot in self.slots.items():
            svc = slot.service
            holder: str | None = self.instance
            if slot.keeper is not None and svc is None:
                holder = instance_of(slot.keeper.holder)
                if slot.standby is not None:
                    slot.standby.holder = holder
            out.append(
                LinkStatus(
                    pbx=name,
                    state=svc.link.state if svc is not None else "standby",
                    held_here=svc is not None,
                    holder=holder,
                    ami_events=slot.retired_events + (svc.link.counters.events if svc else 0),
                    open_calls=len(svc.machine.calls) if svc is not None else 0,
                )
            )
        return out
