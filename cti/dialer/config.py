"""A call campaign's dialer settings: the REST schema that validates them and the runtime
view (:class:`Run`) the dialer works from."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from crm.models import Campaign, DialerCampaign
from crm.schemas import Strict
from cti.dialer import policy as pol
from cti.dialer.window import Range, WindowError, parse_days, parse_hours

RETRY_KEYS = (pol.BUSY, pol.NO_ANSWER, pol.FAILED, pol.AGENT_NO_ANSWER, pol.SKIPPED)


class DispositionIn(Strict):
    code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    en: str = Field(min_length=1, max_length=80)
    fa: str = Field(min_length=1, max_length=80)
    outcome: Literal["final", "retry", "callback", "dnc"] = "final"
    success: bool = False


class DialerSettingsIn(Strict):
    """Everything about how a call campaign dials (all optional on PATCH)."""

    mode: Literal["preview", "progressive"] = "progressive"
    agent_ids: list[int] = Field(default_factory=list, max_length=1000)
    max_attempts: int = Field(default=3, ge=1, le=50)
    retry_minutes: dict[str, float] = Field(default_factory=dict)
    calling_hours: str = Field(default="09:00-20:00", max_length=128)
    calling_days: list[int | str] = Field(default_factory=list, max_length=7)
    timezone: str | None = Field(default=None, max_length=64)
    dispositions: list[DispositionIn] = Field(default_factory=list, max_length=50)
    ring_timeout_s: int = Field(default=30, ge=5, le=300)
    wrapup_s: int = Field(default=30, ge=0, le=3600)
    auto_answer: bool = True
    caller_id: str | None = Field(default=None, max_length=80)
    pbx: str | None = Field(default=None, max_length=64)

    @field_validator("retry_minutes")
    @classmethod
    def _retry_keys(cls, value: dict[str, float]) -> dict[str, float]:
        for key, minutes in value.items():
            if key not in RETRY_KEYS:
                raise ValueError(f"{key!r} is not a result ({', '.join(RETRY_KEYS)})")
            if not 0 <= minutes <= 60 * 24 * 60:
                raise ValueError(f"{key}: minutes must be between 0 and 86400")
        return value

    @field_validator("calling_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        try:
            parse_hours(value)
        except WindowError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("calling_days")
    @classmethod
    def _days(cls, value: list[int | str]) -> list[int | str]:
        try:
            return list(parse_days(value)) if value else []
        except WindowError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value or None

    @field_validator("dispositions")
    @classmethod
    def _unique_codes(cls, value: list[DispositionIn]) -> list[DispositionIn]:
        codes = [d.code for d in value]
        if len(set(codes)) != len(codes):
            raise ValueError("disposition codes must be unique")
        return value


class DialerCampaignIn(DialerSettingsIn):
    """Create a call campaign's dialer: for an existing campaign (``campaign_id``, channel
    call), or a new campaign named here with its segment or lead list."""

    campaign_id: int | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    segment_id: int | None = None
    lead_list_id: int | None = None
    team_id: int | None = None
    offer: str | None = None

    @model_validator(mode="after")
    def _target(self) -> DialerCampaignIn:
        if self.campaign_id is None:
            if not self.name:
                raise ValueError("give campaign_id, or a name for a new campaign")
            if (self.segment_id is None) == (self.lead_list_id is None):
                raise ValueError("a new call campaign needs a segment_id or a lead_list_id")
        return self


SETTING_FIELDS = tuple(DialerSettingsIn.model_fields)


@dataclass(frozen=True)
class Run:
    """A running call campaign as the dialer uses it."""

    campaign_id: int
    name: str
    mode: str
    agents: frozenset[int]
    policy: pol.Policy
    hours: tuple[Range, ...]
    days: tuple[int, ...]
    timezone: str
    dispositions: tuple[pol.Disposition, ...]
    ring_timeout_s: int
    wrapup_s: int
    auto_answer: bool
    caller_id: str | None
    pbx: str | None
    lead_list_id: int | None
    ends_at: dt.datetime | None

    @classmethod
    def of(
        cls,
        campaign: Campaign,
        dialer: DialerCampaign,
        team_members: Sequence[int],
        default_tz: str,
    ) -> Run:
        return cls(
            campaign_id=campaign.id,
            name=campaign.name,
            mode=dialer.mode,
            agents=frozenset(int(a) for a in (dialer.agent_ids or team_members)),
            policy=pol.Policy(
                max_attempts=dialer.max_attempts,
                retry_minutes={**pol.DEFAULT_RETRY_MINUTES, **(dialer.retry_minutes or {})},
            ),
            hours=tuple(parse_hours(dialer.calling_hours)),
            days=parse_days(dialer.calling_days or []),
            timezone=dialer.timezone or default_tz,
            dispositions=pol.parse_dispositions(dialer.dispositions or []),
            ring_timeout_s=dialer.ring_timeout_s,
            wrapup_s=dialer.wrapup_s,
            auto_answer=dialer.auto_answer,
            caller_id=dialer.caller_id,
            pbx=dialer.pbx,
            lead_list_id=campaign.lead_list_id,
            ends_at=campaign.ends_at,
        )


def present_settings(dialer: DialerCampaign) -> dict[str, Any]:
    return {
        "mode": dialer.mode,
        "agent_ids": list(dialer.agent_ids or []),
        "max_attempts": dialer.max_attempts,
        "retry_minutes": {**pol.DEFAULT_RETRY_MINUTES, **(dialer.retry_minutes or {})},
        "calling_hours": dialer.calling_hours,
        "calling_days": list(parse_days(dialer.calling_days or [])),
        "timezone": dialer.timezone,
        "dispositions": [d.to_dict() for d in pol.parse_dispositions(dialer.dispositions)],
        "ring_timeout_s": dialer.ring_timeout_s,
        "wrapup_s": dialer.wrapup_s,
        "auto_answer": dialer.auto_answer,
        "caller_id": dialer.caller_id,
        "pbx": dialer.pbx,
        "list_built_at": dialer.list_built_at.isoformat() if dialer.list_built_at else None,
    }
