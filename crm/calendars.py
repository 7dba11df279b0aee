"""Dates as people in Iran write them: Jalali or Gregorian, in any digits.

Holidays are announced in Jalali (``1405-01-01``), reports are asked for in either, and the
digits may be Persian or Arabic. One reader for all of them, so that ``1405/1/1`` means
the same day in a routing rule and in a report.
"""

from __future__ import annotations

import datetime as dt
import re

import jdatetime

from crm.textfold import ASCII_DIGITS

_DAY = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")

# Years before this are Jalali (the Jalali year is ~621 behind the Gregorian one).
JALALI_BEFORE = 1700


def read_day(text: str, calendar: str | None = None) -> tuple[dt.date, bool]:
    """The Gregorian date ``text`` names, and whether it was written in Jalali.

    ``YYYY-MM-DD`` (or ``/``, ``.``), any digits; ``calendar`` ("jalali" or "gregorian")
    decides, else years before 1700 are Jalali. ValueError says what is wrong.
    """
    m = _DAY.match(text.strip().translate(ASCII_DIGITS))
    if not m:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)")
    y, mo, d = (int(x) for x in m.groups())
    cal = calendar or ("jalali" if y < JALALI_BEFORE else "gregorian")
    if cal not in ("jalali", "gregorian"):
        raise ValueError(f"calendar {calendar!r} must be jalali or gregorian")
    try:
        if cal == "jalali":
            return jdatetime.date(y, mo, d).togregorian(), True
        return dt.date(y, mo, d), False
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid {cal} date: {exc}") from None


def jalali_text(day: dt.date) -> str:
    """``day`` as a Jalali ``YYYY-MM-DD``."""
    j = jdatetime.date.fromgregorian(date=day)
    return f"{j.year:04d}-{j.month:02d}-{j.day:02d}"
