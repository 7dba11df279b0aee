"""Report periods: days given in Jalali or Gregorian, in the call centre's time zone.

``from=1403-01-01&to=1403-01-31`` and ``from=2024-03-20&to=2024-04-19`` are the same
period: years before 1700 are Jalali unless ``calendar=gregorian`` says otherwise; Persian
and Arabic digits and ``/`` or ``.`` separators are accepted. Both days are included, and a
day is midnight to midnight in the configured time zone (``TAMAS_TIMEZONE``), so a call at
00:10 Tehran time on 1 Farvardin belongs to 1 Farvardin although it is still the previous
day in UTC.

Per-interval figures (hour, day, week) are summed in SQL per quarter hour of UTC and then
added into the local buckets here: every time zone in use today is offset from UTC by a
whole number of quarter hours (Tehran +03:30, Kathmandu +05:45), so a quarter hour never
straddles a bucket boundary, daylight saving included.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import jdatetime

from crm.calendars import jalali_text, read_day
from crm.errors import ValidationFailed

SLOT_SECONDS = 900  # a quarter hour
INTERVALS = ("hour", "day", "week")
MAX_DAYS = 3700
MAX_BUCKETS = 2000
WEEKDAYS = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4}
WEEKDAYS |= {"saturday": 5, "sunday": 6}


def parse_day(raw: str, field: str, calendar: str | None = None) -> dt.date:
    """A Gregorian date from ``raw`` (Jalali or Gregorian ``YYYY-MM-DD``)."""
    if calendar not in (None, "jalali", "gregorian"):
        raise ValidationFailed.one("calendar", "must be jalali or gregorian")
    try:
        return read_day(raw, calendar)[0]
    except ValueError as exc:
        raise ValidationFailed.one(field, str(exc)) from None


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant at which ``day`` begins in ``tz``."""
    return dt.datetime.combine(day, dt.time(0), tz).astimezone(dt.UTC)


@dataclass(frozen=True)
class Period:
    """Local days ``first_day`` .. ``last_day`` (inclusive) as the UTC half-open range
    ``[start, end)``."""

    first_day: dt.date
    last_day: dt.date
    tz: ZoneInfo

    @property
    def start(self) -> dt.datetime:
        return local_midnight(self.first_day, self.tz)

    @property
    def end(self) -> dt.datetime:
        return local_midnight(self.last_day + dt.timedelta(days=1), self.tz)

    def describe(self) -> dict[str, str]:
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "from_jalali": jalali_text(self.first_day),
            "to_jalali": jalali_text(self.last_day),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "timezone": self.tz.key,
        }


def period(
    raw_from: str | None,
    raw_to: str | None,
    tz: ZoneInfo,
    calendar: str | None = None,
    today: dt.date | None = None,
) -> Period:
    """The period asked for; by default the last seven days up to today (local)."""
    if calendar not in (None, "jalali", "gregorian"):
        raise ValidationFailed.one("calendar", "must be jalali or gregorian")
    today = today or dt.datetime.now(tz).date()
    last = parse_day(raw_to, "to", calendar) if raw_to else None
    first = parse_day(raw_from, "from", calendar) if raw_from else None
    if last is None:
        last = max(today, first) if first is not None else today
    if first is None:
        first = last - dt.timedelta(days=6)
    if first > last:
        raise ValidationFailed.one("from", "is after to")
    if (last - first).days > MAX_DAYS:
        raise ValidationFailed.one("from", f"the period may span at most {MAX_DAYS} days")
    return Period(first, last, tz)


@dataclass(frozen=True)
class Bucket:
    start: dt.datetime  # local, aware
    end: dt.datetime  # local, aware (exclusive; clipped to the period)

    @property
    def start_utc(self) -> dt.datetime:
        return self.start.astimezone(dt.UTC)


def buckets(p: Period, interval: str, week_start: int = 5) -> list[Bucket]:
    """The local hours, days or weeks covering the period (weeks start on ``week_start``,
    Saturday by default as in Iran; the first and last week are clipped to the period)."""
    if interval not in INTERVALS:
        raise ValidationFailed.one("interval", f"must be one of {', '.join(INTERVALS)}")
    tz = p.tz
    out: list[Bucket] = []
    end = p.end
    if interval == "hour":
        # Walk in UTC: a local hour repeated or skipped by daylight saving stays one hour.
        t = p.start
        while t < end:
            nxt = t + dt.timedelta(hours=1)
            out.append(Bucket(t.astimezone(tz), min(nxt, end).astimezone(tz)))
            t = nxt
            if len(out) > MAX_BUCKETS:
                break
    else:
        day = p.first_day
        while day <= p.last_day:
            if interval == "day":
                nxt_day = day + dt.timedelta(days=1)
            else:
                nxt_day = day + dt.timedelta(days=7 - (day.weekday() - week_start) % 7)
            nxt_day = min(nxt_day, p.last_day + dt.timedelta(days=1))
            out.append(
                Bucket(
                    local_midnight(day, tz).astimezone(tz),
                    local_midnight(nxt_day, tz).astimezone(tz),
                )
            )
            day = nxt_day
            if len(out) > MAX_BUCKETS:
                break
    if len(out) > MAX_BUCKETS:
        raise ValidationFailed.one(
            "interval", f"more than {MAX_BUCKETS} {interval}s: choose a longer interval"
        )
    return out


class SlotMap:
    """Which bucket a quarter-hour slot (``epoch // 900``) falls in."""

    def __init__(self, bs: list[Bucket]) -> None:
        self.starts = [int(b.start_utc.timestamp()) for b in bs]
        self.end = int(bs[-1].end.timestamp()) if bs else 0

    def index(self, slot: int) -> int | None:
        at = slot * SLOT_SECONDS
        if not self.starts or at < self.starts[0] or at >= self.end:
            return None
        return bisect.bisect_right(self.starts, at) - 1


def bucket_label(b: Bucket, interval: str, language: str) -> str:
    """How a bucket is named in a table or on a chart axis (Jalali in Persian)."""
    day = b.start.date()
    if language == "fa":
        j = jdatetime.date.fromgregorian(date=day)
        date = f"{j.year:04d}/{j.month:02d}/{j.day:02d}"
    else:
        date = day.isoformat()
    if interval == "hour":
        return f"{date} {b.start.hour:02d}:{b.start.minute:02d}"
    return date
