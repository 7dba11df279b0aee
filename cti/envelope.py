"""A domain event together with the PBX it came from: what travels on the bus.

Call ids (Asterisk Linkedids) are unique per PBX only, so every consumer needs the PBX name.
``origin`` is None for events this instance produced (it holds the PBX link) and the id of
the producing instance for events republished from the cluster bus (tamas/cluster/): a
subscriber with side effects (the call logger) handles only its own, see ``local_only``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cti.domain_events import DomainEvent


@dataclass(frozen=True, slots=True)
class PbxEvent:
    pbx: str
    event: DomainEvent
    origin: str | None = field(default=None, compare=False)

    @property
    def type(self) -> str:
        return self.event.type

    def to_dict(self) -> dict[str, Any]:
        out = self.event.to_dict()
        out["pbx"] = self.pbx
        return out
