"""Small pure helpers shared by the call-state modules: field parsing, bounded sets, names."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping

from cti.ami_message import AmiMessage
from cti.domain_events import DomainEvent

from .config import INBOUND, OUTBOUND

__all__ = [
    "AGENT_STATE_RANK",
    "ANSWERED_OUTCOMES",
    "EXTENSION_STATUS",
    "FINAL_DIRECTIONS",
    "MISSING",
    "OPEN_OUTCOMES",
    "ORIGINATE_VARIABLE",
    "PBX_RESTART",
    "UNKNOWN",
    "VANISHED",
    "VAR_DID",
    "VAR_KEEP",
    "VAR_ORIGINATE",
    "VAR_RECORDING",
    "Getter",
    "Handler",
    "Out",
    "Recent",
    "busier",
    "duration",
    "getter",
    "known",
    "to_float",
    "to_int",
]

Getter = Callable[[str], "str | None"]
Out = list[DomainEvent]
Handler = Callable[[Getter, float, Out], None]

VANISHED = "vanished during link loss"
PBX_RESTART = "pbx restart"

UNKNOWN = frozenset({"", "<unknown>", "unknown", "<null>", "(null)"})
FINAL_DIRECTIONS = (INBOUND, OUTBOUND)
# Queue outcome of a call per queue: waiting -> (left) -> connecting -> answered -> completed,
# or abandoned.  Only "waiting"/"left"/"connecting" can still be counted as answered/abandoned.
OPEN_OUTCOMES = ("waiting", "left", "connecting")
ANSWERED_OUTCOMES = ("connecting", "answered", "completed")
EXTENSION_STATUS = {
    "-2": None,
    "-1": None,
    "0": "NOT_INUSE",
    "1": "INUSE",
    "2": "BUSY",
    "4": "UNAVAILABLE",
    "8": "RINGING",
    "9": "RINGINUSE",
    "16": "ONHOLD",
    "17": "ONHOLD",
}
VAR_RECORDING = 1
VAR_DID = 2
VAR_KEEP = 3
VAR_ORIGINATE = 4
# Agent states, most telling first: an agent busy on one PBX is busy, though available on
# another (routing's and the dialer's view of who is free).
AGENT_STATE_RANK = {"on_call": 5, "ringing": 4, "wrap_up": 3, "available": 2, "paused": 1}


def busier(state: str, than: str | None) -> bool:
    """Whether an agent ``state`` says more than ``than`` (None: nothing known yet)."""
    return than is None or AGENT_STATE_RANK.get(state, 0) > AGENT_STATE_RANK.get(than, 0)


# Set on every call the gateway originates (click-to-call, the dialer; cti/actions.py).
ORIGINATE_VARIABLE = "TAMAS_ORIGINATE"
MISSING = object()


def to_int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def to_float(value: str | None) -> float | None:
    if not value:
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def known(value: str | None) -> str | None:
    """None for Asterisk's placeholders (``<unknown>``) and empty values."""
    if value is None or value.lower() in UNKNOWN:
        return None
    return value


def duration(value: str | None) -> float | None:
    """``HH:MM:SS`` (CoreShowChannel ``Duration``) or plain seconds, in seconds."""
    if not value:
        return None
    if ":" not in value:
        return to_float(value)
    total = 0.0
    for part in value.split(":"):
        number = to_float(part)
        if number is None:
            return None
        total = total * 60 + number
    return total


def getter(msg: AmiMessage | Mapping[str, str]) -> Getter:
    """Fast ``get`` with lower-case keys: AmiMessage keeps its first values in ``_first``."""
    first = getattr(msg, "_first", None)
    if isinstance(first, dict):
        return first.get
    lowered = {k.lower(): v for k, v in msg.items()}
    return lowered.get


class Recent:
    """A set that forgets its oldest entries beyond ``size`` (bounded memory, O(1) add)."""

    __slots__ = ("_items", "_order", "_size")

    def __init__(self, size: int) -> None:
        self._items: set[str] = set()
        self._order: deque[str] = deque()
        self._size = max(1, size)

    def add(self, key: str) -> None:
        items = self._items
        if key in items:
            return
        items.add(key)
        self._order.append(key)
        if len(items) > self._size:
            items.discard(self._order.popleft())

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
