"""The decisions automation rules make, as pure functions over plain values (time passed
in): tested without a database; :mod:`crm.automation.runner` reads the facts and applies
the answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# -- inactivity -------------------------------------------------------------------------------


def last_touch(last_activity: dt.datetime | None, created_at: dt.datetime) -> dt.datetime:
    """When the customer was last dealt with: their latest activity, else their creation."""
    if last_activity is None:
        return created_at
    return max(last_activity, created_at)


def inactive(
    last_activity: dt.datetime | None, created_at: dt.datetime, now: dt.datetime, days: int
) -> bool:
    """No activity for at least ``days`` days (a record with none counts from creation)."""
    return last_touch(last_activity, created_at) <= now - dt.timedelta(days=days)


def flag_stage(current: str | None, active_stages: Sequence[str], target: str) -> bool:
    """Whether an inactive customer in ``current`` stage is to be moved to ``target``:
    it is in one of the active stages (any stage when none are listed), not there yet."""
    if (current or "") == target:
        return False
    return not active_stages or (current or "") in active_stages


# -- choosing people ---------------------------------------------------------------------------


def under_caps(
    last_hour: int, last_day: int, cap_per_hour: int | None, cap_per_day: int | None
) -> bool:
    if cap_per_hour is not None and last_hour >= cap_per_hour:
        return False
    return not (cap_per_day is not None and last_day >= cap_per_day)


@dataclass(frozen=True)
class Pick:
    user_id: int | None  # None: nobody may take it now
    position: int  # the round-robin position to continue from


def pick_user(
    candidates: Sequence[int],
    *,
    strategy: str = "round_robin",
    position: int = 0,
    loads: Mapping[int, int] | None = None,
    last_hour: Mapping[int, int] | None = None,
    last_day: Mapping[int, int] | None = None,
    cap_per_hour: int | None = None,
    cap_per_day: int | None = None,
    exclude: Iterable[int] = (),
) -> Pick:
    """Whom to give one more record: among ``candidates`` (in a stable order), skipping
    ``exclude`` and anyone at a cap, round robin from ``position`` or the least loaded
    (ties: earliest in ``candidates``)."""
    excluded = set(exclude)
    hours, days = last_hour or {}, last_day or {}
    ok = [
        u
        for u in candidates
        if u not in excluded
        and under_caps(hours.get(u, 0), days.get(u, 0), cap_per_hour, cap_per_day)
    ]
    if not ok or not candidates:
        return Pick(None, position)
    if strategy == "least_loaded":
        load = loads or {}
        best = min(ok, key=lambda u: (load.get(u, 0), candidates.index(u)))
        return Pick(best, position)
    n = len(candidates)
    for step in range(n):
        idx = (position + step) % n
        if candidates[idx] in ok:
            return Pick(candidates[idx], (idx + 1) % n)
    return Pick(None, position)  # pragma: no cover - ok is non-empty


def spread(
    items: Sequence[tuple[str, int]], targets: Sequence[int], position: int = 0
) -> tuple[list[tuple[str, int, int]], int]:
    """Reassignment of ``items`` ((entity, id)) round robin over ``targets`` from
    ``position``: ``[(entity, id, user)]`` and the position to continue from."""
    if not targets:
        return [], position
    out = []
    n = len(targets)
    for i, (entity, rid) in enumerate(items):
        out.append((entity, rid, targets[(position + i) % n]))
    return out, (position + len(items)) % n


# -- stages ----------------------------------------------------------------------------------


def stage_change(
    changes: Mapping[str, Sequence[object]], field: str
) -> tuple[object | None, object | None] | None:
    """``(old, new)`` of ``field`` in an audit diff (a new record: ``(None, value)``), or
    None when the field did not change."""
    pair = changes.get(field)
    if pair is None or len(pair) != 2:
        return None
    old, new = pair[0], pair[1]
    return None if old == new else (old, new)


def _same(a: str | None, b: str) -> bool:
    return (a or "").strip().casefold() == b.strip().casefold()


def stage_fires(on: str, stage: str, old: str | None, new: str | None) -> bool:
    """Entering ``stage`` (was elsewhere, now there) or leaving it (was there, now not);
    stage names compare without case."""
    if on == "enter":
        return _same(new, stage) and not _same(old, stage)
    return _same(old, stage) and not _same(new, stage)


# -- reminders ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A task's due time or a meeting's start, for one user."""

    activity_id: int
    user_id: int
    at: dt.datetime
    kind: str  # task, meeting


def reminders_due(
    items: Iterable[Due],
    now: dt.datetime,
    minutes_before: Mapping[str, int],
    grace_minutes: int,
    sent: Iterable[tuple[int, int, dt.datetime]] = (),
) -> list[Due]:
    """The reminders to send now: the time is at most ``minutes_before`` away (by kind),
    or passed no longer than ``grace_minutes`` ago, and this user was not reminded of this
    time yet (a moved due time is reminded again)."""
    done = set(sent)
    out = []
    for d in items:
        before = dt.timedelta(minutes=minutes_before.get(d.kind, 0))
        if d.at - before > now or d.at < now - dt.timedelta(minutes=grace_minutes):
            continue
        if (d.activity_id, d.user_id, d.at) in done:
            continue
        out.append(d)
    return sorted(out, key=lambda d: (d.at, d.activity_id))
