"""Agent records and the rule that turns what we know about an agent into one state.

An agent's state is derived, not stored: call facts (ringing for / busy with which calls),
queue facts (membership, pause per queue, wrap-up deadline) and the device state are kept
separately and :meth:`AgentState.compute` ranks them.  That way an event lost or arriving late
only leaves one fact stale instead of a state machine stuck in the wrong place.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AVAILABLE",
    "LOGGED_OUT",
    "ON_CALL",
    "PAUSED",
    "RINGING",
    "WRAP_UP",
    "AgentState",
    "device_state_from_queue_status",
]

LOGGED_OUT = "logged_out"
AVAILABLE = "available"
RINGING = "ringing"
ON_CALL = "on_call"
WRAP_UP = "wrap_up"
PAUSED = "paused"

_BUSY_DEVICE = frozenset({"INUSE", "BUSY", "ONHOLD"})
_RINGING_DEVICE = frozenset({"RINGING", "RINGINUSE"})
_ONLINE_DEVICE = frozenset({"NOT_INUSE", "INUSE", "BUSY", "ONHOLD", "RINGING", "RINGINUSE"})

# QueueMember*/QueueMemberStatus "Status" is an ast_device_state number.
_QUEUE_STATUS = {
    "0": "UNKNOWN",
    "1": "NOT_INUSE",
    "2": "INUSE",
    "3": "BUSY",
    "4": "INVALID",
    "5": "UNAVAILABLE",
    "6": "RINGING",
    "7": "RINGINUSE",
    "8": "ONHOLD",
}


def device_state_from_queue_status(status: str | None) -> str | None:
    """Device state name for a queue member ``Status`` number (None when absent/unknown)."""
    if status is None:
        return None
    return _QUEUE_STATUS.get(status)


class AgentState:
    """Everything the machine knows about one agent."""

    __slots__ = (
        "agent",
        "device",
        "device_state",
        "last_key",
        "member_name",
        "queue_wrapup",
        "queues",
        "ringing",
        "since",
        "state",
        "talking",
        "wrapup_until",
    )

    def __init__(self, agent: str, now: float) -> None:
        self.agent = agent
        self.member_name: str | None = None
        self.device: str | None = None
        self.device_state: str | None = None
        self.queues: dict[str, str | None] = {}  # queue -> pause reason ("" if none) or None
        self.queue_wrapup: dict[str, float] = {}  # queue -> member-specific wrap-up seconds
        self.ringing: set[str] = set()  # call ids ringing this agent
        self.talking: set[str] = set()  # call ids the agent is busy with
        self.wrapup_until = 0.0
        self.state = LOGGED_OUT
        self.since = now
        # (state, pause reason, queues, paused queues) as agent.state last reported them
        self.last_key: tuple[str, str | None, tuple[str, ...], tuple[str, ...]] | None = None

    def pause_reason(self) -> str | None:
        """Reason of the pause (first paused queue), or None when not paused anywhere."""
        for reason in self.queues.values():
            if reason is not None:
                return reason
        return None

    def paused_queues(self) -> tuple[str, ...]:
        return tuple(sorted(q for q, r in self.queues.items() if r is not None))

    def compute(self, now: float) -> str:
        """One state from the facts, most telling first.

        Call facts beat device state (a Local or SIP device reports INUSE while it rings);
        paused means paused in every queue the agent is in (still taking calls from a queue
        means available); without queues an agent is available when its device is online.
        """
        if self.talking:
            return ON_CALL
        if self.ringing:
            return RINGING
        ds = self.device_state
        if ds in _BUSY_DEVICE:
            return ON_CALL
        if ds in _RINGING_DEVICE:
            return RINGING
        if self.wrapup_until > now:
            return WRAP_UP
        queues = self.queues
        if queues:
            for reason in queues.values():
                if reason is None:
                    return AVAILABLE
            return PAUSED
        if ds in _ONLINE_DEVICE:
            return AVAILABLE
        return LOGGED_OUT

    def current_call(self) -> str | None:
        for call_id in self.talking:
            return call_id
        for call_id in self.ringing:
            return call_id
        return None

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "state": self.state,
            "since": self.since,
            "pause_reason": self.pause_reason(),
            "queues": sorted(self.queues),
            "paused_queues": list(self.paused_queues()),
            "device": self.device,
            "device_state": self.device_state,
            "member_name": self.member_name,
            "call_id": self.current_call(),
            "wrapup_remaining": max(0.0, self.wrapup_until - now),
        }
