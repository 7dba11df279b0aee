"""What the generic record service needs to know about each entity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from crm import models as m
from crm import schemas as s


@dataclass(frozen=True)
class EntitySpec:
    name: str  # "contact": permission and audit name
    plural: str  # "contacts": URL segment
    model: type[Any]
    create: type[BaseModel]
    update: type[BaseModel]
    filters: frozenset[str]  # columns that may be filtered on
    sorts: tuple[str, ...]  # non-null columns that may be sorted on; first is the default
    search_parts: Callable[[Any], list[str | None]] | None = None
    customer: bool = False  # has phones and contact preferences
    taggable: bool = False
    custom: bool = False
    soft_delete: bool = True
    refs: dict[str, str] = field(default_factory=dict)  # fk column -> entity name
    # Columns that are set by the service, never by the client.
    readonly: frozenset[str] = frozenset()


COMMON_FILTERS = frozenset({"id", "owner_id", "team_id", "created_at", "updated_at"})
PREFS = frozenset({"preferred_channel", "do_not_call", "email_opt_out", "is_vip"})


def _person_parts(r: Any) -> list[str | None]:
    return [
        r.first_name,
        r.last_name,
        r.email,
        getattr(r, "company", None),
        r.job_title if hasattr(r, "job_title") else None,
    ]


SPECS: dict[str, EntitySpec] = {}


def _add(spec: EntitySpec) -> None:
    SPECS[spec.name] = spec


_add(
    EntitySpec(
        "account",
        "accounts",
        m.Account,
        s.AccountIn,
        s.partial(s.AccountIn),
        COMMON_FILTERS | PREFS | {"name", "industry", "city", "country", "lifecycle_stage"},
        ("id", "created_at", "updated_at", "name"),
        lambda r: [r.name, r.email, r.website, r.city, r.industry],
        customer=True,
        taggable=True,
        custom=True,
        refs={"owner_id": "user", "team_id": "team"},
        readonly=frozenset({"merged_into_id"}),
    )
)
_add(
    EntitySpec(
        "contact",
        "contacts",
        m.Contact,
        s.ContactIn,
        s.partial(s.ContactIn),
        COMMON_FILTERS
        | PREFS
        | {
            "account_id",
            "account_role",
            "language",
            "lifecycle_stage",
            "satisfaction",
            "email",
            "first_name",
            "last_name",
        },
        ("id", "created_at", "updated_at", "last_name", "first_name"),
        _person_parts,
        customer=True,
        taggable=True,
        custom=True,
        refs={"account_id": "account", "owner_id": "user", "team_id": "team"},
        readonly=frozenset({"merged_into_id"}),
    )
)
_add(
    EntitySpec(
        "lead",
        "leads",
        m.Lead,
        s.LeadIn,
        s.partial(s.LeadIn),
        COMMON_FILTERS
        | PREFS
        | {
            "status",
            "rating",
            "source",
            "lead_list_id",
            "campaign_id",
            "language",
            "email",
        },
        ("id", "created_at", "updated_at", "last_name", "status"),
        lambda r: [r.first_name, r.last_name, r.email, r.company, r.source],
        customer=True,
        taggable=True,
        custom=True,
        refs={
            "lead_list_id": "lead_list",
            "campaign_id": "campaign",
            "owner_id": "user",
            "team_id": "team",
        },
        readonly=frozenset(
            {
                "converted_at",
                "converted_contact_id",
                "converted_account_id",
                "converted_deal_id",
                "merged_into_id",
            }
        ),
    )
)
_add(
    EntitySpec(
        "deal",
        "deals",
        m.Deal,
        s.DealIn,
        s.partial(s.DealIn),
        COMMON_FILTERS
        | {
            "pipeline_id",
            "stage_id",
            "status",
            "currency",
            "contact_id",
            "account_id",
            "campaign_id",
            "amount",
            "expected_close",
        },
        ("id", "created_at", "updated_at", "amount", "title"),
        lambda r: [r.title, r.won_lost_reason],
        taggable=True,
        custom=True,
        refs={
            "contact_id": "contact",
            "account_id": "account",
            "campaign_id": "campaign",
            "owner_id": "user",
            "team_id": "team",
        },
        readonly=frozenset({"closed_at"}),
    )
)
_add(
    EntitySpec(
        "case",
        "cases",
        m.Case,
        s.CaseIn,
        s.partial(s.CaseIn),
        COMMON_FILTERS | {"status", "priority", "contact_id", "account_id", "lead_id"},
        ("id", "created_at", "updated_at", "priority", "status"),
        lambda r: [r.subject, r.description],
        taggable=True,
        custom=True,
        refs={
            "contact_id": "contact",
            "account_id": "account",
            "lead_id": "lead",
            "owner_id": "user",
            "team_id": "team",
        },
        readonly=frozenset({"closed_at"}),
    )
)
_add(
    EntitySpec(
        "activity",
        "activities",
        m.Activity,
        s.ActivityIn,
        s.partial(s.ActivityIn),
        COMMON_FILTERS
        | {
            "kind",
            "contact_id",
            "account_id",
            "lead_id",
            "deal_id",
            "case_id",
            "campaign_id",
            "direction",
            "queue",
            "agent_id",
            "assignee_id",
            "status",
            "is_callback",
            "disposition",
            "due_at",
            "occurred_at",
            "external_number",
            "pbx",
            "call_uid",
        },
        ("id", "occurred_at", "created_at", "due_at"),
        lambda r: [r.subject, r.body, r.disposition],
        refs={
            "contact_id": "contact",
            "account_id": "account",
            "lead_id": "lead",
            "deal_id": "deal",
            "case_id": "case",
            "campaign_id": "campaign",
            "owner_id": "user",
            "agent_id": "user",
            "assignee_id": "user",
        },
        readonly=frozenset(
            {
                "pbx",
                "call_uid",
                "external_number",
                "duration_s",
                "wait_s",
                "talk_s",
                "hangup_cause",
                "recording_path",
                "completed_at",
            }
        ),
    )
)
_add(
    EntitySpec(
        "campaign",
        "campaigns",
        m.Campaign,
        s.CampaignIn,
        s.partial(s.CampaignIn),
        COMMON_FILTERS | {"channel", "status", "segment_id", "lead_list_id"},
        ("id", "created_at", "updated_at", "name"),
        lambda r: [r.name, r.offer],
        refs={
            "segment_id": "segment",
            "lead_list_id": "lead_list",
            "owner_id": "user",
            "team_id": "team",
        },
    )
)
_add(
    EntitySpec(
        "segment",
        "segments",
        m.Segment,
        s.SegmentIn,
        s.partial(s.SegmentIn),
        frozenset({"id", "entity_type", "kind", "owner_id"}),
        ("id", "name"),
        soft_delete=False,
    )
)
_add(
    EntitySpec(
        "lead_list",
        "lead-lists",
        m.LeadList,
        s.LeadListIn,
        s.partial(s.LeadListIn),
        frozenset({"id", "name"}),
        ("id", "name"),
        soft_delete=False,
    )
)
_add(
    EntitySpec(
        "tag",
        "tags",
        m.Tag,
        s.TagIn,
        s.partial(s.TagIn),
        frozenset({"id", "name"}),
        ("name", "id"),
        soft_delete=False,
    )
)
_add(
    EntitySpec(
        "custom_field",
        "custom-fields",
        m.CustomFieldDef,
        s.CustomFieldIn,
        s.partial(s.CustomFieldIn),
        frozenset({"id", "entity_type", "key", "field_type"}),
        ("id", "key"),
        soft_delete=False,
    )
)

BY_PLURAL = {spec.plural: spec for spec in SPECS.values()}
