"""Mutable per-channel and per-call records owned by the machine.

Plain ``__slots__`` classes rather than dataclasses: thousands of them live at once and their
attributes are touched on every AMI event, so they stay small and cheap.  Only the machine
mutates them; readers get them through read-only mappings and ``to_dict()``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Call", "Channel"]


class Channel:
    """One Asterisk channel (keyed by Uniqueid), as far as the call state needs it."""

    __slots__ = (
        "agent",
        "bridge",
        "call_id",
        "caller_name",
        "caller_num",
        "device",
        "linkedid",
        "name",
        "state",
        "uid",
        "waiting_in",
    )

    def __init__(self, uid: str, name: str, call_id: str, linkedid: str, device: str) -> None:
        self.uid = uid
        self.name = name
        self.call_id = call_id
        self.linkedid = linkedid  # the raw Linkedid Asterisk last reported for it
        self.device = device
        self.agent: str | None = None
        self.state: str | None = None
        self.bridge: str | None = None
        self.caller_num: str | None = None
        self.caller_name: str | None = None
        self.waiting_in: set[str] | None = None  # queues this (caller) channel waits in

    def __repr__(self) -> str:
        return f"Channel({self.uid!r}, {self.name!r}, call={self.call_id!r})"


class Call:
    """A call: every channel sharing one Linkedid (after following merges)."""

    __slots__ = (
        "agent_channels",
        "agents_rung",
        "agents_talked",
        "answered_at",
        "answered_by",
        "busy_agents",
        "call_id",
        "caller_name",
        "cause",
        "cause_text",
        "channels",
        "connected",
        "customer_uid",
        "did",
        "direction",
        "external_number",
        "external_raw",
        "hold_seconds",
        "hold_started",
        "originate",
        "queue",
        "queue_outcomes",
        "recording",
        "recording_active",
        "ring_targets",
        "ringing",
        "started_at",
        "talk_reported",
        "transfers",
        "variables",
        "wait_seconds",
        "wrapup_queue",
    )

    def __init__(self, call_id: str, started_at: float) -> None:
        self.call_id = call_id
        self.started_at = started_at
        self.channels: set[str] = set()  # live channel uniqueids
        self.direction: str | None = None
        self.external_raw: str | None = None
        self.external_number: str | None = None
        self.caller_name: str | None = None
        self.customer_uid: str | None = None  # the channel of the outside party, when known
        self.did: str | None = None
        self.queue: str | None = None
        self.queue_outcomes: dict[str, str] = {}
        self.wait_seconds: float | None = None
        self.answered_at: float | None = None
        self.answered_by: str | None = None
        self.agents_rung: list[str] = []
        self.agents_talked: list[str] = []
        self.ringing: dict[str, float] = {}  # agent -> ring start, while ringing
        self.connected: dict[str, float] = {}  # agent -> connect time, while connected
        self.busy_agents: set[str] = set()  # agents this call made busy (to release at end)
        self.agent_channels: dict[str, set[str]] = {}  # agent -> live channel uids
        self.ring_targets: dict[str, str] = {}  # dest uniqueid -> agent (rung before seen)
        self.wrapup_queue: dict[str, str] = {}  # agent -> queue whose wrap-up applies
        self.cause: int | None = None
        self.cause_text: str | None = None
        self.recording: str | None = None
        self.recording_active = False
        self.hold_started: float | None = None
        self.hold_seconds = 0.0
        self.talk_reported: float | None = None  # Asterisk's TalkTime (AgentComplete)
        self.transfers: list[dict[str, Any]] = []
        self.originate: dict[str, Any] | None = None
        self.variables: dict[str, str] = {}

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    @property
    def on_hold(self) -> bool:
        return self.hold_started is not None

    def to_dict(self, now: float) -> dict[str, Any]:
        """JSON-ready view of the open call (for ``snapshot()`` and supervisor screens)."""
        return {
            "call_id": self.call_id,
            "direction": self.direction,
            "external_number": self.external_number,
            "external_number_raw": self.external_raw,
            "caller_name": self.caller_name,
            "did": self.did,
            "queue": self.queue,
            "started_at": self.started_at,
            "duration": max(0.0, now - self.started_at),
            "answered_at": self.answered_at,
            "answered_by": self.answered_by,
            "agents_rung": list(self.agents_rung),
            "agents_talked": list(self.agents_talked),
            "ringing": sorted(self.ringing),
            "connected": sorted(self.connected),
            "wait_seconds": self.wait_seconds,
            "on_hold": self.on_hold,
            "recording": self.recording,
            "transfers": [dict(t) for t in self.transfers],
            "originate": dict(self.originate) if self.originate else None,
            "variables": dict(self.variables),
            "channels": len(self.channels),
        }

    def __repr__(self) -> str:
        return f"Call({self.call_id!r}, {self.direction}, channels={len(self.channels)})"
