"""Which agents are available, as routing sees them on any gateway instance.

On the instance holding a PBX's AMI link the answer is that PBX's call-state machine. On any
other instance (several instances, tamas/cluster/) the machine is empty: the states there
are the ones the holder's ``agent.state`` events said last, which the cluster bus brings to
every instance (a newly started instance asks the holders for the current ones, see
tamas/pbx_links.py). So a FastAGI request routes the same whichever instance it reaches.

Not the screen-pop hub's agent views: those are keyed by agent alone (the last PBX an agent
was seen on wins), where routing needs the busiest state across every PBX.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cti.callstate.support import busier
from cti.control import Pbx
from cti.directory import user_id_of


class AgentAvailability:
    """Live agent states of every PBX (``pbxs``: the control layer's, swapped in place when
    a link changes hands), here or on the instance holding its link."""

    def __init__(self, pbxs: Mapping[str, Pbx]) -> None:
        self.pbxs = pbxs
        self._reported: dict[str, dict[int, str]] = {}
        """PBX -> user id -> state, as the ``agent.state`` events said last (any instance)."""

    async def handle(self, envelope: Any) -> None:
        """Bus subscriber for ``agent.state``, this instance's and the others'. Kept for
        PBXs held here too, so it is current when the link moves to another instance."""
        uid = user_id_of(envelope.event.agent)
        if uid is not None:
            self._reported.setdefault(envelope.pbx, {})[uid] = envelope.event.state

    def of_pbx(self, name: str) -> Mapping[int, str]:
        """user id -> state on one PBX."""
        pbx = self.pbxs.get(name)
        if pbx is None or not pbx.held_here:
            return self._reported.get(name, {})
        out: dict[int, str] = {}
        for agent, state in pbx.machine.agents.items():
            uid = user_id_of(agent)
            if uid is not None:
                out[uid] = state.state
        return out

    def states(self) -> dict[int, str]:
        """user id -> state across every PBX, the busiest winning (routing's availability)."""
        out: dict[int, str] = {}
        for name in list(self.pbxs):
            for uid, state in self.of_pbx(name).items():
                current = out.get(uid)
                if busier(state, current):
                    out[uid] = state
        return out
