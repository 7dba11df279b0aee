"""One PBX in the running gateway: AMI link → call-state machine → event bus.

The machine is pure; this shell gives it the clock, feeds it the link's events and resync
lists, ticks it once a second (wrap-up ends without an event) and publishes what it says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from crm.phones import try_normalize
from cti.ami_link import AmiLink, ResyncSnapshot
from cti.ami_message import AmiMessage
from cti.callstate import CallStateConfig, CallStateMachine
from cti.directory import DeviceDirectory
from cti.envelope import PbxEvent
from tamas.bus import EventBus
from tamas.config import AmiServer, CallRules
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.cti")


@dataclass(frozen=True, slots=True)
class LinkStateChanged:
    """The AMI link of a PBX went up or down (wallboards show it, metrics count it)."""

    pbx: str
    state: str
    at: float
    type: str = "pbx.link"
    origin: str | None = field(default=None, compare=False)  # see cti.envelope.PbxEvent

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "pbx": self.pbx, "state": self.state, "at": self.at}


def machine_config(rules: CallRules, region: str, directory: DeviceDirectory) -> CallStateConfig:
    def normalize(raw: str) -> str | None:
        return try_normalize(raw, region)

    return CallStateConfig(
        inbound_contexts=tuple(rules.inbound_contexts),
        internal_contexts=tuple(rules.internal_contexts),
        outbound_contexts=tuple(rules.outbound_contexts),
        dids=frozenset(rules.dids),
        normalize_number=normalize,
        agent_for_device=directory.agent_for_device,
        default_service_level_seconds=rules.service_level_seconds,
        default_wrapup_seconds=rules.wrapup_seconds,
    )


class PbxService:
    def __init__(
        self, server: AmiServer, bus: EventBus, config: CallStateConfig, **link_options: Any
    ) -> None:
        self.name = server.name
        self.bus = bus
        self.machine = CallStateMachine(config)
        self.link = AmiLink(
            server,
            on_event=self._on_event,
            on_resync=self._on_resync,
            on_state=self._on_state,
            **link_options,
        )
        self._ticker: asyncio.Task[None] | None = None

    def _publish(self, events: list[Any]) -> None:
        for ev in events:
            self.bus.publish(PbxEvent(self.name, ev))

    def _on_event(self, msg: AmiMessage) -> None:
        self._publish(self.machine.feed(msg, time.time()))

    def _on_resync(self, snap: ResyncSnapshot) -> None:
        events = self.machine.apply_snapshot(
            snap.channels, snap.queue_status, snap.device_states, snap.at
        )
        log.info(
            "pbx resynced",
            extra={
                "pbx": self.name,
                "channels": len(snap.channels),
                "open_calls": len(self.machine.calls),
            },
        )
        self._publish(events)

    def publish_agent_states(self) -> None:
        """Every agent's current state on the bus again (for instances that joined late)."""
        self._publish(self.machine.agent_states(time.time()))

    def _on_state(self, state: str) -> None:
        self.bus.publish(LinkStateChanged(self.name, state, time.time()))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._publish(self.machine.tick(time.time()))

    async def start(self) -> None:
        self.link.start()
        self._ticker = asyncio.create_task(self._tick(), name=f"tick:{self.name}")

    async def stop(self) -> None:
        await cancel_and_wait([self._ticker])
        await self.link.stop()
