"""Routing rules as data: what the API accepts, what the database keeps, what the engine reads.

A rule is an ordered list of *conditions* (all of them, or any of them, must hold) and one
*action*. Conditions and actions are pydantic discriminated unions on ``kind`` / ``type``, so
a bad rule is refused with the field and the reason, and a stored rule reads back as typed
values. Every condition may be negated with ``"negate": true``.

Conditions (``kind``):

========================  =====================================================================
``unknown_caller``        no live CRM record has the caller's number (withheld numbers included)
``record_type``           the matched record is a contact / lead / account
``owner``                 the record's owner is one of ``user_ids`` / in one of ``team_ids``
                          (both empty: the record has an owner at all)
``tag``                   the record has ``any`` / ``all`` of ``tags`` (case-insensitive)
``lead_status``           the matched lead's status is one of ``statuses``
``lead_list``             the matched lead is in one of ``lead_list_ids``
``lead_rating``           the matched lead's rating is one of ``ratings``
``open_deals``            at least ``min_count`` open deals, worth at least ``min_value`` together
``open_cases``            at least ``min_count`` open cases (optionally only of ``priorities``)
``custom_field``          custom field ``key`` compared with ``op`` to ``value``
``field``                 a record field (lifecycle stage, source, city, ...) compared likewise
``language``              the record's language is one of ``languages``
``vip``                   the record (or a contact's account) is VIP
``did``                   the number dialled is one of ``dids`` (any written form)
``caller_number``         the caller's number matches one of ``patterns`` (``*`` and ``?``
                          wildcards, against ``+98912...`` and ``0912...`` forms alike)
``time``                  local time within ``start``-``end`` on one of ``weekdays``
``business_hours``        within the hours of calendar ``calendar_id`` and not on its holidays
``holiday``               today is a holiday of calendar ``calendar_id``
``agent_available``       at least ``min_available`` of the record owner / ``user_ids`` /
                          members of ``team_id`` are available right now
========================  =====================================================================

Actions (``type``): ``owner`` (ring the record owner's devices if the owner is available and
under the caps ``max_per_hour`` / ``max_per_day``, else try the next rule), ``queue`` (with a
priority), ``team_queue`` (the team's queue), ``voicemail``, ``external`` (a number over the
trunk) and ``reject``.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, field_validator, model_validator

from crm.calendars import jalali_text, read_day
from crm.schemas import Strict

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
Weekday = Literal["sat", "sun", "mon", "tue", "wed", "thu", "fri"]
ALL_WEEKDAYS: list[Weekday] = ["sat", "sun", "mon", "tue", "wed", "thu", "fri"]

# Names that end up in dialplan applications (Queue, VoiceMail): no separators, no spaces.
QUEUE_RE = r"^[A-Za-z0-9_.\-]{1,64}$"
MAILBOX_RE = r"^[A-Za-z0-9_.\-]{1,32}(@[A-Za-z0-9_.\-]{1,32})?$"

# Record fields the ``field`` condition may look at (absent on a record type: no value).
RECORD_FIELDS = (
    "lifecycle_stage",
    "source",
    "company",
    "city",
    "country",
    "industry",
    "account_role",
    "job_title",
    "satisfaction",
    "preferred_channel",
    "do_not_call",
    "campaign_id",
    "team_id",
)
RecordField = Literal[
    "lifecycle_stage",
    "source",
    "company",
    "city",
    "country",
    "industry",
    "account_role",
    "job_title",
    "satisfaction",
    "preferred_channel",
    "do_not_call",
    "campaign_id",
    "team_id",
]
CompareOp = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte", "contains", "set"]
Scalar = str | int | float | bool | None


class _Frozen(Strict):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class _Condition(_Frozen):
    negate: bool = False


class UnknownCaller(_Condition):
    kind: Literal["unknown_caller"]


class RecordType(_Condition):
    kind: Literal["record_type"]
    types: list[Literal["contact", "lead", "account"]] = Field(min_length=1)


class OwnerIs(_Condition):
    kind: Literal["owner"]
    user_ids: list[int] = Field(default_factory=list, max_length=200)
    team_ids: list[int] = Field(default_factory=list, max_length=50)


class HasTag(_Condition):
    kind: Literal["tag"]
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=50
    )
    match: Literal["any", "all"] = "any"


class LeadStatus(_Condition):
    kind: Literal["lead_status"]
    statuses: list[Literal["new", "contacted", "qualified", "unqualified", "converted"]] = Field(
        min_length=1
    )


class LeadList(_Condition):
    kind: Literal["lead_list"]
    lead_list_ids: list[int] = Field(min_length=1, max_length=200)


class LeadRating(_Condition):
    kind: Literal["lead_rating"]
    ratings: list[Annotated[str, Field(min_length=1, max_length=8)]] = Field(min_length=1)


class OpenDeals(_Condition):
    kind: Literal["open_deals"]
    min_count: int = Field(default=1, ge=0, le=10_000)
    # Sum of the open deals' amounts, in their major unit (no currency conversion).
    min_value: Decimal | None = Field(default=None, ge=0)


class OpenCases(_Condition):
    kind: Literal["open_cases"]
    min_count: int = Field(default=1, ge=0, le=10_000)
    priorities: list[Literal["low", "normal", "high", "urgent"]] = Field(default_factory=list)


class _Compare(_Condition):
    op: CompareOp = "eq"
    value: Scalar | list[Scalar] = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> _Compare:
        if self.op == "in":
            if not isinstance(self.value, list) or not self.value:
                raise ValueError("op 'in' needs a non-empty list as value")
        elif isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a single value")
        elif self.value is None and self.op in ("gt", "gte", "lt", "lte", "contains"):
            raise ValueError(f"op {self.op!r} needs a value")
        return self


class CustomField(_Compare):
    kind: Literal["custom_field"]
    key: str = Field(min_length=1, max_length=64)


class RecordFieldIs(_Compare):
    kind: Literal["field"]
    field: RecordField


class Language(_Condition):
    kind: Literal["language"]
    languages: list[Annotated[str, Field(min_length=2, max_length=8)]] = Field(min_length=1)


class Vip(_Condition):
    kind: Literal["vip"]


class Did(_Condition):
    kind: Literal["did"]
    dids: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        min_length=1, max_length=200
    )


class CallerNumber(_Condition):
    kind: Literal["caller_number"]
    patterns: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        min_length=1, max_length=200
    )

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        for p in values:
            if not re.fullmatch(r"\+?[0-9*?]+", p):
                raise ValueError(f"{p!r}: use digits, a leading + and the wildcards * and ?")
        return values


class TimeOfDay(_Condition):
    kind: Literal["time"]
    weekdays: list[Weekday] = Field(default_factory=lambda: list(ALL_WEEKDAYS), min_length=1)
    start: dt.time
    end: dt.time  # exclusive; an end before the start spans midnight

    @model_validator(mode="after")
    def _window(self) -> TimeOfDay:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class BusinessHours(_Condition):
    kind: Literal["business_hours"]
    calendar_id: int


class Holiday(_Condition):
    kind: Literal["holiday"]
    calendar_id: int


class AgentAvailable(_Condition):
    kind: Literal["agent_available"]
    owner: bool = False  # the matched record's owner
    user_ids: list[int] = Field(default_factory=list, max_length=200)
    team_id: int | None = None
    min_available: int = Field(default=1, ge=1, le=1000)

    @model_validator(mode="after")
    def _someone(self) -> AgentAvailable:
        if not (self.owner or self.user_ids or self.team_id is not None):
            raise ValueError("name the agents: owner, user_ids or team_id")
        return self


Condition = Annotated[
    UnknownCaller
    | RecordType
    | OwnerIs
    | HasTag
    | LeadStatus
    | LeadList
    | LeadRating
    | OpenDeals
    | OpenCases
    | CustomField
    | RecordFieldIs
    | Language
    | Vip
    | Did
    | CallerNumber
    | TimeOfDay
    | BusinessHours
    | Holiday
    | AgentAvailable,
    Field(discriminator="kind"),
]


# -- actions -------------------------------------------------------------------------------


class ToOwner(_Frozen):
    """Ring the owner's devices; when the owner is unavailable or capped, the next rule."""

    type: Literal["owner"]
    ring_seconds: int = Field(default=20, ge=5, le=300)
    # Where the call goes when the owner does not answer (default: the default queue).
    no_answer_queue: str | None = Field(default=None, pattern=QUEUE_RE)
    # Lead volume caps: calls this routing sent to the agent in the last hour / 24 hours.
    max_per_hour: int | None = Field(default=None, ge=1, le=100_000)
    max_per_day: int | None = Field(default=None, ge=1, le=1_000_000)


class ToQueue(_Frozen):
    type: Literal["queue"]
    queue: str = Field(pattern=QUEUE_RE)
    priority: int = Field(default=0, ge=0, le=100)  # Asterisk QUEUE_PRIO: higher first


class ToTeamQueue(_Frozen):
    type: Literal["team_queue"]
    team_id: int
    priority: int = Field(default=0, ge=0, le=100)


class ToVoicemail(_Frozen):
    type: Literal["voicemail"]
    mailbox: str = Field(pattern=MAILBOX_RE)  # "1001" or "1001@default"


class ToExternal(_Frozen):
    type: Literal["external"]
    number: str = Field(min_length=3, max_length=32)  # stored in E.164 (normalized on save)
    ring_seconds: int = Field(default=30, ge=5, le=300)


class Reject(_Frozen):
    type: Literal["reject"]
    cause: int = Field(default=21, ge=1, le=127)  # Q.850: 21 call rejected, 17 busy


Action = Annotated[
    ToOwner | ToQueue | ToTeamQueue | ToVoicemail | ToExternal | Reject,
    Field(discriminator="type"),
]


class RuleIn(Strict):
    """A routing rule as the API takes it."""

    name: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool = True
    # 1-based place in the order; omitted: after the last rule.
    position: int | None = Field(default=None, ge=1)
    match: Literal["all", "any"] = "all"
    conditions: list[Condition] = Field(default_factory=list, max_length=30)
    action: Action


class RulePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = None
    position: int | None = Field(default=None, ge=1)
    match: Literal["all", "any"] | None = None
    conditions: list[Condition] | None = Field(default=None, max_length=30)
    action: Action | None = None


class RuleOrderIn(Strict):
    ids: list[int] = Field(min_length=1)


CONDITIONS: TypeAdapter[list[Condition]] = TypeAdapter(list[Condition])
ACTION: TypeAdapter[Action] = TypeAdapter(Action)


# -- calendars -----------------------------------------------------------------------------


def parse_window(text: str) -> tuple[str, str]:
    """``"08:00-17:00"`` → ``("08:00", "17:00")``; ValueError when malformed or empty."""
    try:
        start, end = (part.strip() for part in text.split("-"))
        s, e = dt.time.fromisoformat(start), dt.time.fromisoformat(end)
    except ValueError:
        raise ValueError(f"{text!r} must look like 08:00-17:00") from None
    if s == e:
        raise ValueError(f"{text!r} is an empty window")
    return s.strftime("%H:%M"), e.strftime("%H:%M")


def parse_holiday_date(text: str) -> tuple[dt.date, str | None]:
    """A holiday date: Gregorian ``2026-03-21``, or Jalali ``1405-01-01`` (any year before
    1700 is read as Jalali, the calendar Iranian holidays are announced in). Returns the
    Gregorian date and the Jalali text when one was given."""
    day, was_jalali = read_day(text)
    return day, jalali_text(day) if was_jalali else None


# Iran: Saturday to Wednesday full days, Thursday mornings, Friday closed.
DEFAULT_HOURS: dict[Weekday, list[str]] = {
    "sat": ["08:00-17:00"],
    "sun": ["08:00-17:00"],
    "mon": ["08:00-17:00"],
    "tue": ["08:00-17:00"],
    "wed": ["08:00-17:00"],
    "thu": ["08:00-13:00"],
    "fri": [],
}


class HolidayIn(Strict):
    date: str = Field(min_length=8, max_length=10)
    name: str = Field(default="", max_length=128)


class CalendarIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    # Windows per weekday, "HH:MM-HH:MM"; a weekday left out is closed.
    hours: dict[Weekday, list[str]] = Field(default_factory=lambda: dict(DEFAULT_HOURS))
    holidays: list[HolidayIn] = Field(default_factory=list, max_length=1000)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {
            day: [f"{s}-{e}" for s, e in map(parse_window, wins)] for day, wins in value.items()
        }

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, value: list[HolidayIn]) -> list[HolidayIn]:
        for h in value:
            parse_holiday_date(h.date)
        return value

    def stored(self) -> dict[str, Any]:
        """Column values: windows as ``[start, end]`` pairs, holidays with Gregorian dates."""
        given: dict[str, list[str]] = {str(k): v for k, v in self.hours.items()}
        hours = {day: [list(parse_window(w)) for w in given.get(day, [])] for day in WEEKDAYS}
        holidays = []
        for h in self.holidays:
            date, jalali = parse_holiday_date(h.date)
            item: dict[str, Any] = {"date": date.isoformat(), "name": h.name}
            if jalali:
                item["jalali"] = jalali
            holidays.append(item)
        holidays.sort(key=lambda x: x["date"])
        return {"name": self.name, "hours": hours, "holidays": holidays}


class CalendarPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    hours: dict[Weekday, list[str]] | None = None
    holidays: list[HolidayIn] | None = Field(default=None, max_length=1000)
