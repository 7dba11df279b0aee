"""One client connection of the SIMULATED PBX and what it asked to receive."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from cti.simulator.wire import Pairs


def event_mask(value: str | None) -> set[str] | None:
    """Login/Events ``on``/``off``/class list -> None (everything) or the allowed classes."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("on", "yes", "true", "1", "all", ""):
        return None
    if v in ("off", "no", "false", "0"):
        return set()
    return {c.strip() for c in v.split(",") if c.strip()}


@dataclass(eq=False)
class Session:
    """One client connection."""

    writer: asyncio.StreamWriter
    peer: str
    authenticated: bool = False
    username: str = ""
    event_mask: set[str] | None = None
    include: list[re.Pattern[str]] = field(default_factory=list)
    exclude: list[re.Pattern[str]] = field(default_factory=list)
    replaying: bool = False
    pending: list[bytes] = field(default_factory=list)
    replay_task: asyncio.Task[None] | None = None
    replay_done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def closing(self) -> bool:
        return self.writer.is_closing()

    def send(self, data: bytes) -> None:
        """Write now, or after the current replayed message if a replay is streaming."""
        if self.closing:
            return
        if self.replaying:
            self.pending.append(data)
        else:
            self.writer.write(data)

    def wants(self, pairs: Pairs) -> bool:
        if self.event_mask is not None:
            priv = pairs[1][1] if len(pairs) > 1 and pairs[1][0] == "Privilege" else ""
            if not set(priv.lower().split(",")) & self.event_mask:
                return False
        if self.include or self.exclude:
            text = "".join(f"{k}: {v}\r\n" for k, v in pairs)
            if self.include and not any(p.search(text) for p in self.include):
                return False
            if any(p.search(text) for p in self.exclude):
                return False
        return True
