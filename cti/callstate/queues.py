"""Per-queue waiting list and running statistics.

Counters are plain integers and sums updated in O(1) per event; averages and the service level
are derived only when a snapshot is taken.  Waiting times reported by Asterisk (``HoldTime`` /
``TalkTime``) are preferred over our own clock differences so the figures equal Asterisk's
``queue_log``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from cti.domain_events import QueueStats

__all__ = ["QueueState"]


class QueueState:
    """One queue: who waits since when, who is a member, and what happened so far."""

    __slots__ = (
        "abandoned",
        "answered",
        "answered_within_sl",
        "completed",
        "member_counts",
        "members",
        "name",
        "offered",
        "order",
        "pbx",
        "sl_seconds",
        "strategy",
        "total_abandon_wait",
        "total_talk",
        "total_wait",
        "waiting",
    )

    def __init__(self, name: str, sl_seconds: float) -> None:
        self.name = name
        self.sl_seconds = sl_seconds
        self.waiting: dict[str, tuple[float, str]] = {}  # caller uid -> (join time, call id)
        # Join order for the longest wait in O(1): entries whose caller left are skipped lazily.
        self.order: deque[tuple[float, str]] = deque()
        self.members: dict[str, str] = {}  # queue interface -> agent id
        # (members, available, paused, busy), recomputed only after an agent of ours changed
        self.member_counts: tuple[int, int, int, int] | None = None
        self.offered = 0
        self.answered = 0
        self.abandoned = 0
        self.completed = 0
        self.answered_within_sl = 0
        self.total_wait = 0.0
        self.total_abandon_wait = 0.0
        self.total_talk = 0.0
        self.strategy: str | None = None
        self.pbx: dict[str, str] = {}  # Asterisk's own QueueParams figures, as last reported

    def add_waiting(self, uid: str, joined: float, call_id: str) -> None:
        self.waiting[uid] = (joined, call_id)
        self.order.append((joined, uid))
        if len(self.order) > 4 * len(self.waiting) + 64:  # many left out of order: compact
            self.order = deque(sorted((j, u) for u, (j, _) in self.waiting.items()))

    def longest_wait(self, now: float) -> float:
        """Wait of the caller who joined first (amortized O(1), this runs on every change)."""
        order = self.order
        waiting = self.waiting
        while order:
            joined, uid = order[0]
            entry = waiting.get(uid)
            if entry is not None and entry[0] == joined:
                return max(0.0, now - joined)
            order.popleft()
        return 0.0

    def stats(self, now: float, members: int, available: int, paused: int, busy: int) -> QueueStats:
        answered = self.answered
        return QueueStats(
            at=now,
            queue=self.name,
            waiting=len(self.waiting),
            longest_wait=self.longest_wait(now),
            offered=self.offered,
            answered=answered,
            abandoned=self.abandoned,
            completed=self.completed,
            answered_within_sl=self.answered_within_sl,
            service_level_seconds=self.sl_seconds,
            service_level_pct=(100.0 * self.answered_within_sl / answered) if answered else None,
            avg_wait=(self.total_wait / answered) if answered else None,
            avg_abandon_wait=(self.total_abandon_wait / self.abandoned) if self.abandoned else None,
            avg_talk=(self.total_talk / self.completed) if self.completed else None,
            members=members,
            available=available,
            paused=paused,
            busy=busy,
        )

    def to_dict(self, stats: QueueStats, now: float) -> dict[str, Any]:
        out = stats.to_dict()
        out.pop("type", None)
        out["strategy"] = self.strategy
        out["members_list"] = sorted(set(self.members.values()))
        out["longest_wait"] = self.longest_wait(now)
        out["callers"] = [
            {"uniqueid": uid, "call_id": call_id, "joined_at": joined, "wait": now - joined}
            for uid, (joined, call_id) in sorted(self.waiting.items(), key=lambda kv: kv[1][0])
        ]
        out["pbx"] = dict(self.pbx)
        return out
