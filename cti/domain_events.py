"""Domain events: what the call-state machine tells the rest of Tamas.

They are the only vocabulary the bus, the screen-pop hub, the call logger and the statistics
see, so they carry plain values (str, int, float, None, tuples, dicts of those) and never an
AMI message: consumers must not need to know Asterisk to use them.  ``to_dict()`` gives the
JSON form (``{"type": "call.ringing", ...}``) that goes over websockets and into logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = [
    "AgentStateChanged",
    "CallAnswered",
    "CallEnded",
    "CallHeld",
    "CallRinging",
    "CallTransferred",
    "CallUnheld",
    "CallUpdated",
    "DomainEvent",
    "PbxResynced",
    "QueueCallerAbandoned",
    "QueueCallerJoined",
    "QueueCallerLeft",
    "QueueStats",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    """Shared read-only empty mapping (a dataclass default cannot be a mapping itself)."""
    return _EMPTY


def _jsonable(value: Any) -> Any:
    """Tuples become lists and mappings plain dicts, recursively (what ``json.dumps`` takes)."""
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Base of all domain events; ``at`` is the event time (epoch seconds) the machine used."""

    type: ClassVar[str] = "event"
    at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the ``type`` first."""
        cls = type(self)
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = tuple(f.name for f in fields(self))
            _FIELD_NAMES[cls] = names
        out: dict[str, Any] = {"type": self.type}
        for name in names:
            out[name] = _jsonable(getattr(self, name))
        return out


# --- calls --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRinging(DomainEvent):
    """An agent's device started ringing for a call (the screen-pop moment)."""

    type: ClassVar[str] = "call.ringing"
    call_id: str
    agent: str
    device: str | None = None
    channel: str | None = None
    member_name: str | None = None
    queue: str | None = None
    direction: str | None = None
    external_number: str | None = None
    external_number_raw: str | None = None
    caller_name: str | None = None
    did: str | None = None
    variables: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class CallAnswered(DomainEvent):
    """An agent (or, for calls without agents, some party) got connected to the call.

    Emitted once per agent per call; ``first`` tells whether this is the call's answer (later
    ones are transfer targets and the like).
    """

    type: ClassVar[str] = "call.answered"
    call_id: str
    agent: str | None = None
    device: str | None = None
    channel: str | None = None
    queue: str | None = None
    direction: str | None = None
    external_number: str | None = None
    did: str | None = None
    wait_seconds: float | None = None
    first: bool = True


@dataclass(frozen=True, slots=True)
class CallTransferred(DomainEvent):
    """A blind or attended transfer completed (or failed: see ``result``)."""

    type: ClassVar[str] = "call.transferred"
    call_id: str
    kind: str  # "blind" | "attended"
    result: str | None = None
    by_agent: str | None = None
    by_channel: str | None = None
    target: str | None = None  # "exten@context" for blind transfers
    to_agent: str | None = None
    consult_call_id: str | None = None  # the other call merged into this one (attended)


@dataclass(frozen=True, slots=True)
class CallHeld(DomainEvent):
    """A party of the call put it on hold (``channel`` is the one that pressed hold)."""

    type: ClassVar[str] = "call.held"
    call_id: str
    channel: str | None = None
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class CallUnheld(DomainEvent):
    """The call came back from hold."""

    type: ClassVar[str] = "call.unheld"
    call_id: str
    channel: str | None = None
    agent: str | None = None
    held_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class CallUpdated(DomainEvent):
    """Something known about an open call changed; ``changes`` holds only the new values."""

    type: ClassVar[str] = "call.updated"
    call_id: str
    changes: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class CallEnded(DomainEvent):
    """The call is over (every channel of it hung up, vanished, or the PBX restarted).

    Emitted exactly once per call; this is the record the call logger stores.
    """

    type: ClassVar[str] = "call.ended"
    call_id: str
    direction: str | None = None
    external_number: str | None = None
    external_number_raw: str | None = None
    caller_name: str | None = None
    did: str | None = None
    queue: str | None = None
    started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    answered: bool = False
    abandoned: bool = False
    answered_by: str | None = None
    agents_rung: tuple[str, ...] = ()
    agents_talked: tuple[str, ...] = ()
    wait_seconds: float | None = None
    talk_seconds: float | None = None
    hold_seconds: float = 0.0
    cause: int | None = None
    cause_text: str | None = None
    recording: str | None = None
    transfers: tuple[Mapping[str, Any], ...] = ()
    originate: Mapping[str, Any] | None = None
    variables: Mapping[str, str] = field(default_factory=_empty)
    merged_into: str | None = None


# --- queues -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueCallerJoined(DomainEvent):
    type: ClassVar[str] = "queue.caller_joined"
    queue: str
    call_id: str
    channel: str | None = None
    position: int | None = None
    count: int | None = None
    external_number: str | None = None
    caller_name: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCallerLeft(DomainEvent):
    """The caller left the waiting list; ``reason`` is answered, abandoned, exited or hangup."""

    type: ClassVar[str] = "queue.caller_left"
    queue: str
    call_id: str
    channel: str | None = None
    position: int | None = None
    count: int | None = None
    wait_seconds: float | None = None
    reason: str = "exited"


@dataclass(frozen=True, slots=True)
class QueueCallerAbandoned(DomainEvent):
    type: ClassVar[str] = "queue.caller_abandoned"
    queue: str
    call_id: str
    channel: str | None = None
    position: int | None = None
    original_position: int | None = None
    wait_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class QueueStats(DomainEvent):
    """Snapshot of one queue after a change (supervisor wallboard figures).

    Counters start when the gateway first saw the queue.  ``service_level_pct`` is the share
    of answered calls that waited at most ``service_level_seconds``; averages are over
    answered (wait), abandoned (abandon wait) and completed (talk) calls.
    """

    type: ClassVar[str] = "queue.stats"
    queue: str
    waiting: int = 0
    longest_wait: float = 0.0
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    completed: int = 0
    answered_within_sl: int = 0
    service_level_seconds: float = 20.0
    service_level_pct: float | None = None
    avg_wait: float | None = None
    avg_abandon_wait: float | None = None
    avg_talk: float | None = None
    members: int = 0
    available: int = 0
    paused: int = 0
    busy: int = 0


# --- agents and PBX -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentStateChanged(DomainEvent):
    """An agent's state, pause reason or queue membership changed."""

    type: ClassVar[str] = "agent.state"
    agent: str
    state: str
    previous: str | None = None
    pause_reason: str | None = None
    queues: tuple[str, ...] = ()
    paused_queues: tuple[str, ...] = ()
    device: str | None = None
    member_name: str | None = None
    call_id: str | None = None
    since: float | None = None
    """When the agent entered ``state``, on the current-state events sent to an instance
    that starts late (``at`` is then the time of sending); None: at ``at``."""


@dataclass(frozen=True, slots=True)
class PbxResynced(DomainEvent):
    """State was rebuilt from a PBX snapshot (after a reconnect) or cleared (PBX restart)."""

    type: ClassVar[str] = "pbx.resynced"
    reason: str
    open_calls: int = 0
    closed_calls: tuple[str, ...] = ()
    # After a snapshot: every call still open on the PBX (the call log closes the others).
    open_call_ids: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    agents: int = 0
