"""Report periods: Jalali or Gregorian days in the call centre's time zone, and the hour,
day and week buckets the per-interval figures are added into."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import jdatetime
import pytest

from crm.errors import ValidationFailed
from crm.reports.period import SLOT_SECONDS, SlotMap, bucket_label, buckets, parse_day, period

TEHRAN = ZoneInfo("Asia/Tehran")


@pytest.mark.parametrize(
    "raw, calendar, expected",
    [
        ("1403-01-01", None, dt.date(2024, 3, 20)),  # Nowruz 1403
        ("۱۴۰۳/۰۱/۰۱", None, dt.date(2024, 3, 20)),  # Persian digits and slashes
        ("١٤٠٣.١.١", None, dt.date(2024, 3, 20)),  # Arabic-Indic digits, dots, no padding
        ("1403-12-30", None, dt.date(2025, 3, 20)),  # 1403 is a Jalali leap year
        ("2024-03-20", None, dt.date(2024, 3, 20)),
        ("2024/2/29", "gregorian", dt.date(2024, 2, 29)),
        ("1402-12-29", "jalali", dt.date(2024, 3, 19)),
    ],
)
def test_days_are_read_in_either_calendar(raw, calendar, expected):
    assert parse_day(raw, "from", calendar) == expected


@pytest.mark.parametrize("raw", ["1402-12-30", "2023-02-29", "1403-13-01", "yesterday", "1403-1"])
def test_impossible_days_are_refused_with_the_field_named(raw):
    with pytest.raises(ValidationFailed) as err:
        parse_day(raw, "to")
    assert err.value.errors[0]["field"] == "to"


def test_a_local_day_is_midnight_to_midnight_in_the_configured_zone():
    p = period("1403-01-01", "1403-01-01", TEHRAN)
    # Tehran is UTC+03:30: the day starts at 20:30 UTC the evening before.
    assert p.start == dt.datetime(2024, 3, 19, 20, 30, tzinfo=dt.UTC)
    assert p.end == dt.datetime(2024, 3, 20, 20, 30, tzinfo=dt.UTC)
    assert p.describe()["from_jalali"] == "1403-01-01"
    assert p == period("2024-03-20", "2024-03-20", TEHRAN)


def test_default_period_is_the_last_seven_days_and_order_is_checked():
    p = period(None, None, TEHRAN, today=dt.date(2024, 3, 20))
    assert (p.first_day, p.last_day) == (dt.date(2024, 3, 14), dt.date(2024, 3, 20))
    with pytest.raises(ValidationFailed):
        period("2024-03-21", "2024-03-20", TEHRAN)
    with pytest.raises(ValidationFailed):
        period("2024-03-21", None, TEHRAN, calendar="hijri")


def test_day_buckets_across_a_daylight_saving_change_and_hours_that_day():
    berlin = ZoneInfo("Europe/Berlin")
    p = period("2024-03-30", "2024-04-01", berlin)
    days = buckets(p, "day")
    assert [b.start.date().isoformat() for b in days] == ["2024-03-30", "2024-03-31", "2024-04-01"]
    hours_per_day = [
        round((b.end.astimezone(dt.UTC) - b.start_utc).total_seconds() / 3600) for b in days
    ]
    assert hours_per_day == [24, 23, 24]  # clocks go forward on 31 March
    hours = buckets(period("2024-03-31", "2024-03-31", berlin), "hour")
    assert len(hours) == 23
    assert [h.start.hour for h in hours[:4]] == [0, 1, 3, 4]


def test_weeks_start_on_saturday_and_are_clipped_to_the_period():
    p = period("2024-03-20", "2024-04-02", TEHRAN)  # a Wednesday to a Tuesday
    weeks = buckets(p, "week")
    starts = [b.start.date() for b in weeks]
    assert starts == [dt.date(2024, 3, 20), dt.date(2024, 3, 23), dt.date(2024, 3, 30)]
    assert all(d.weekday() == 5 for d in starts[1:])  # Saturday
    assert weeks[-1].end.date() == dt.date(2024, 4, 3)
    monday = buckets(p, "week", week_start=0)
    assert [b.start.date() for b in monday][1] == dt.date(2024, 3, 25)


def test_each_quarter_hour_of_utc_falls_in_exactly_one_local_bucket():
    p = period("2024-03-19", "2024-03-21", TEHRAN)
    hours = buckets(p, "hour")
    slots = SlotMap(hours)
    first = int(p.start.timestamp()) // SLOT_SECONDS
    last = int(p.end.timestamp()) // SLOT_SECONDS
    seen = [slots.index(s) for s in range(first, last)]
    assert seen == [i for i in range(len(hours)) for _ in range(4)]  # 4 quarters per hour
    assert slots.index(first - 1) is None and slots.index(last) is None


def test_labels_are_jalali_in_persian():
    p = period("2024-03-20", "2024-03-20", TEHRAN)
    [day] = buckets(p, "day")
    assert bucket_label(day, "day", "fa") == "1403/01/01"
    assert bucket_label(day, "day", "en") == "2024-03-20"
    hour = buckets(p, "hour")[13]
    assert bucket_label(hour, "hour", "fa") == "1403/01/01 13:00"
    j = jdatetime.date.fromgregorian(date=dt.date(2024, 3, 20))
    assert (j.year, j.month, j.day) == (1403, 1, 1)
