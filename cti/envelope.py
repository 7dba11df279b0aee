"""A domain event together with the PBX it came from: what travels on the bus.

Call ids (Asterisk Linkedids) are unique per PBX only, so every consumer needs the PBX name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cti.domain_events import DomainEvent


@dataclass(frozen=True, slots=True)
class PbxEvent:
    pbx: str
    event: DomainEvent

    @property
    def type(self) -> str:
        return self.event.type

    def to_dict(self) -> dict[str, Any]:
        out = self.event.to_dict()
        out["pbx"] = self.pbx
        return out
