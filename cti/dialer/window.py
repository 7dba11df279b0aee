"""When a customer may be called: calling hours in the customer's own time zone.

Pure functions over plain values (time is passed in). A campaign has calling hours and days
("09:00-13:00,16:00-20:00", Saturday to Thursday); a customer may have a best time to call
of their own and a time zone. The customer is called only inside both, in their local time:
a Tehran call centre calling a customer in Dubai calls in Dubai's hours.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm.textfold import ASCII_DIGITS

Range = tuple[dt.time, dt.time]  # [start, end) of a day, local time
ALL_DAYS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # Monday .. Sunday (datetime.weekday)

_RANGE = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*[-–~]\s*(\d{1,2})(?::(\d{2}))?\s*$")
_DAY_NAMES = {
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
}


class WindowError(ValueError):
    """Calling hours that cannot be read."""


def _time(hour: str, minute: str | None) -> dt.time:
    h, m = int(hour), int(minute or 0)
    if h == 24 and m == 0:
        return dt.time.max
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise WindowError(f"{hour}:{minute or '00'} is not a time of day")
    return dt.time(h, m)


def parse_hours(text: str) -> list[Range]:
    """``"09:00-12:00, 16-20"`` (Persian digits too) → sorted ranges; an end before its
    start crosses midnight (``"22:00-02:00"`` is two ranges)."""
    out: list[Range] = []
    cleaned = text.translate(ASCII_DIGITS).replace("،", ",").replace(";", ",")
    for part in cleaned.split(","):
        if not part.strip():
            continue
        m = _RANGE.match(part)
        if m is None:
            raise WindowError(f"{part.strip()!r} is not a range like 09:00-12:00")
        start, end = _time(m[1], m[2]), _time(m[3], m[4])
        if start == end:
            raise WindowError(f"{part.strip()!r} is empty")
        if end < start:
            out += [(start, dt.time.max), (dt.time.min, end)]
        else:
            out.append((start, end))
    if not out:
        raise WindowError("no calling hours given")
    return sorted(out)


def try_parse_hours(text: str | None) -> list[Range] | None:
    """The ranges of a free-text best time, or None when it is empty or unreadable (a note
    such as "evenings" then does not stop the customer from being called)."""
    if not text or not text.strip():
        return None
    try:
        return parse_hours(text)
    except WindowError:
        return None


def parse_days(values: Iterable[int | str]) -> tuple[int, ...]:
    """Weekday numbers (0 Monday .. 6 Sunday) or names (``sat``); empty means every day."""
    days: set[int] = set()
    for v in values:
        if isinstance(v, int) and 0 <= v <= 6:
            days.add(v)
        elif isinstance(v, str) and v[:3].lower() in _DAY_NAMES:
            days.add(_DAY_NAMES[v[:3].lower()])
        else:
            raise WindowError(f"{v!r} is not a weekday (0=Monday .. 6=Sunday, or mon..sun)")
    return tuple(sorted(days)) or ALL_DAYS


def intersect(a: Sequence[Range], b: Sequence[Range]) -> list[Range]:
    out: list[Range] = []
    for s1, e1 in a:
        for s2, e2 in b:
            start, end = max(s1, s2), min(e1, e2)
            if start < end:
                out.append((start, end))
    return sorted(out)


def zone(name: str | None, default: str) -> ZoneInfo:
    """The customer's zone, or ``default`` when they have none or an unknown one."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class Window:
    """When one customer may be called: ranges of their local day, on these weekdays."""

    ranges: tuple[Range, ...]
    days: tuple[int, ...]
    tz: ZoneInfo

    def open_at(self, now_utc: dt.datetime) -> bool:
        local = now_utc.astimezone(self.tz)
        if local.weekday() not in self.days:
            return False
        t = local.time().replace(tzinfo=None)
        return any(
            start <= t < end or (end == dt.time.max and t >= start) for start, end in self.ranges
        )

    def next_open(self, now_utc: dt.datetime, horizon_days: int = 8) -> dt.datetime | None:
        """``now_utc`` if open, else the next moment it opens (UTC); None if never."""
        if not self.ranges:
            return None
        if self.open_at(now_utc):
            return now_utc
        local = now_utc.astimezone(self.tz)
        for offset in range(horizon_days):
            day = local.date() + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            for start, _end in self.ranges:
                candidate = dt.datetime.combine(day, start, self.tz)
                # Wall times skipped by a DST jump land an hour later; still the opening.
                if candidate.astimezone(dt.UTC) > now_utc:
                    return candidate.astimezone(dt.UTC)
        return None


def customer_window(
    campaign_hours: Sequence[Range],
    campaign_days: Sequence[int],
    campaign_tz: str,
    best_time: str | None,
    customer_tz: str | None,
) -> Window:
    """The campaign's hours narrowed to the customer's best time to call (when it can be
    read), in the customer's time zone (else the campaign's)."""
    ranges = list(campaign_hours)
    best = try_parse_hours(best_time)
    if best is not None:
        ranges = intersect(ranges, best)
    return Window(tuple(ranges), tuple(campaign_days), zone(customer_tz, campaign_tz))
