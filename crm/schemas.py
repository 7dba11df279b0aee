"""Input schemas of the CRM: what the API, the importer and the CLI accept.

One schema per entity for create; updates use the same schema with every field optional
(``partial``). Validation errors come back as ``(field, reason)`` pairs.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictInt,
    create_model,
    field_validator,
)

Channel = Literal["phone", "mobile", "sms", "email", "whatsapp", "in_person"]
PhoneKind = Literal["mobile", "office", "home", "fax", "other"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MergeIn(Strict):
    duplicate_ids: list[StrictInt] = Field(min_length=1)


class PhoneIn(Strict):
    number: str = Field(min_length=1, max_length=64)
    kind: PhoneKind = "mobile"
    is_primary: bool = False


class Preferences(Strict):
    preferred_channel: Channel | None = None
    best_time_to_call: str | None = Field(default=None, max_length=64)
    timezone: str | None = Field(default=None, max_length=64)
    do_not_call: bool = False
    email_opt_out: bool = False

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @field_validator("best_time_to_call")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        """``HH:MM-HH:MM`` windows (comma separated) so the dialler can honour them."""
        if not value:
            return value
        for part in value.split(","):
            try:
                start, end = part.strip().split("-")
                dt.time.fromisoformat(start.strip())
                dt.time.fromisoformat(end.strip())
            except ValueError:
                raise ValueError("must look like 09:00-12:00 (comma separated windows)") from None
        return value


class CustomerFields(Preferences):
    owner_id: int | None = None
    team_id: int | None = None
    is_vip: bool = False
    phones: list[PhoneIn] = Field(default_factory=list, max_length=20)
    tags: list[str] = Field(default_factory=list, max_length=50)
    custom: dict[str, Any] = Field(default_factory=dict)


class AccountIn(CustomerFields):
    name: str = Field(min_length=1, max_length=200)
    industry: str | None = Field(default=None, max_length=100)
    website: str | None = Field(default=None, max_length=254)
    email: EmailStr | None = None
    address: str | None = None
    city: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    lifecycle_stage: str | None = Field(default=None, max_length=32)


class ContactIn(CustomerFields):
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    email: EmailStr | None = None
    account_id: int | None = None
    account_role: Literal["decision_maker", "influencer", "user", "gatekeeper", "other"] | None = (
        None
    )
    job_title: str | None = Field(default=None, max_length=100)
    language: str | None = Field(default=None, max_length=8)
    lifecycle_stage: str | None = Field(default=None, max_length=32)
    satisfaction: int | None = Field(default=None, ge=0, le=10)
    birthday: dt.date | None = None


class LeadIn(CustomerFields):
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    company: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    source: str | None = Field(default=None, max_length=64)
    status: Literal["new", "contacted", "qualified", "unqualified"] = "new"
    rating: Literal["hot", "warm", "cold"] | None = None
    lead_list_id: int | None = None
    campaign_id: int | None = None
    language: str | None = Field(default=None, max_length=8)


class DealIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    pipeline_id: int | None = None
    stage_id: int | None = None
    amount: Decimal = Field(default=Decimal(0), ge=0, max_digits=22, decimal_places=2)
    currency: str = Field(default="IRR", pattern=r"^[A-Z]{3}$")
    expected_close: dt.date | None = None
    status: Literal["open", "won", "lost"] = "open"
    won_lost_reason: str | None = None
    contact_id: int | None = None
    account_id: int | None = None
    campaign_id: int | None = None
    owner_id: int | None = None
    team_id: int | None = None
    tags: list[str] = Field(default_factory=list)
    custom: dict[str, Any] = Field(default_factory=dict)


class CaseIn(Strict):
    subject: str = Field(min_length=1, max_length=200)
    description: str | None = None
    status: Literal["new", "open", "pending", "resolved", "closed"] = "new"
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    contact_id: int | None = None
    account_id: int | None = None
    lead_id: int | None = None
    owner_id: int | None = None
    team_id: int | None = None
    tags: list[str] = Field(default_factory=list)
    custom: dict[str, Any] = Field(default_factory=dict)


class ActivityIn(Strict):
    kind: Literal["call", "note", "task", "meeting"]
    subject: str = Field(default="", max_length=200)
    body: str | None = None
    contact_id: int | None = None
    account_id: int | None = None
    lead_id: int | None = None
    deal_id: int | None = None
    case_id: int | None = None
    campaign_id: int | None = None
    owner_id: int | None = None
    occurred_at: dt.datetime | None = None
    direction: Literal["inbound", "outbound", "internal"] | None = None
    from_number: str | None = Field(default=None, max_length=64)
    to_number: str | None = Field(default=None, max_length=64)
    queue: str | None = Field(default=None, max_length=64)
    agent_id: int | None = None
    started_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    disposition: str | None = Field(default=None, max_length=32)
    due_at: dt.datetime | None = None
    assignee_id: int | None = None
    status: Literal["open", "done", "cancelled"] | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    is_callback: bool = False
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    location: str | None = Field(default=None, max_length=200)


class CampaignIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    channel: Literal["call", "email"] = "call"
    status: Literal["draft", "scheduled", "running", "paused", "done"] = "draft"
    offer: str | None = None
    budget: Decimal = Field(default=Decimal(0), ge=0)
    cost: Decimal = Field(default=Decimal(0), ge=0)
    currency: str = Field(default="IRR", pattern=r"^[A-Z]{3}$")
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    segment_id: int | None = None
    lead_list_id: int | None = None
    owner_id: int | None = None
    team_id: int | None = None
    call_script: str | None = Field(default=None, max_length=100_000)  # a template (0006)


class SegmentIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    entity_type: Literal["contact", "lead", "account"] = "contact"
    kind: Literal["static", "dynamic"] = "dynamic"
    filter: dict[str, Any] = Field(default_factory=dict)


class LeadListIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    call_script: str | None = None


class StageIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    probability: int = Field(default=0, ge=0, le=100)
    is_won: bool = False
    is_lost: bool = False


class PipelineIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    is_default: bool = False
    stages: list[StageIn] = Field(default_factory=list)


class TagIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    color: str | None = Field(default=None, max_length=16)


class CustomFieldIn(Strict):
    entity_type: Literal["account", "contact", "lead", "deal", "case"]
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    field_type: Literal["text", "number", "date", "bool", "choice"]
    label_en: str = Field(min_length=1, max_length=128)
    label_fa: str = Field(min_length=1, max_length=128)
    choices: list[str] = Field(default_factory=list)
    required: bool = False
    sensitive: bool = False


class DeviceIn(Strict):
    interface: str = Field(pattern=r"^[A-Za-z0-9]+/[^\s]+$", max_length=128)
    label: str = ""
    kind: Literal["desk_phone", "softphone", "headset", "mobile"] = "desk_phone"


class UserIn(Strict):
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{2,64}$")
    full_name: str = Field(default="", max_length=200)
    email: EmailStr | None = None
    password: str = Field(min_length=8, max_length=256)
    role: str = "agent"
    extension: str | None = Field(default=None, pattern=r"^[0-9*#]{1,32}$")
    language: Literal["fa", "en"] = "fa"
    skills: list[str] = Field(default_factory=list)
    devices: list[DeviceIn] = Field(default_factory=list)
    team_ids: list[int] = Field(default_factory=list)
    is_active: bool = True


class TeamIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    queue: str | None = Field(default=None, max_length=128)


def partial(model: type[BaseModel]) -> type[BaseModel]:
    """The update form of ``model``: every field optional and default-less (PATCH)."""
    fields: dict[str, Any] = {
        name: (f.annotation | None, None)  # type: ignore[operator]
        for name, f in model.model_fields.items()
    }
    return create_model(f"{model.__name__}Patch", __base__=Strict, **fields)
