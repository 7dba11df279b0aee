"""The CRM data model (SQLAlchemy 2 typed ORM).

Customer records (accounts, contacts, leads) all carry an owner, contact preferences and
soft deletion; phones, tags, custom field values, documents and audit entries hang off any
record through ``(entity_type, entity_id)`` so one indexed table serves every kind.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone by itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SoftDeleted:
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ContactPreferences:
    """How a customer wants to be reached; outbound dialling and e-mail honour these."""

    preferred_channel: Mapped[str | None] = mapped_column(String(16))  # phone, sms, email...
    best_time_to_call: Mapped[str | None] = mapped_column(String(64))  # e.g. "09:00-12:00"
    timezone: Mapped[str | None] = mapped_column(String(64))
    do_not_call: Mapped[bool] = mapped_column(default=False)
    email_opt_out: Mapped[bool] = mapped_column(default=False)


# --- users, teams, roles ------------------------------------------------------------------


class Role(Base, Timestamped):
    """A set of permissions; ``scope`` says which records the role sees at all."""

    __tablename__ = "roles"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(8), default="own")  # own, team, all
    see_unassigned: Mapped[bool] = mapped_column(default=True)
    see_team: Mapped[bool] = mapped_column(default=False)
    # {"contact": ["view", "create", "edit", "delete", "export"], ...}
    permissions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"contact": ["phones", "email"]}: shown masked to holders of this role
    masked_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_builtin: Mapped[bool] = mapped_column(default=False)
    __table_args__ = (CheckConstraint("scope in ('own','team','all')", name="scope"),)


class Team(Base, Timestamped):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    queue: Mapped[str | None] = mapped_column(String(128))
    members: Mapped[list[TeamMember]] = relationship(
        back_populates="team", cascade="all, delete-orphan", lazy="selectin"
    )


class User(Base, Timestamped):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"), index=True)
    extension: Mapped[str | None] = mapped_column(String(32), index=True)
    language: Mapped[str] = mapped_column(String(2), default="fa")
    skills: Mapped[list[Any]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[dt.datetime | None]
    role: Mapped[Role] = relationship(lazy="joined")
    devices: Mapped[list[Device]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )
    teams: Mapped[list[TeamMember]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )


class TeamMember(Base):
    __tablename__ = "team_members"
    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    is_lead: Mapped[bool] = mapped_column(default=False)
    team: Mapped[Team] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="teams")


class Device(Base, Timestamped):
    """An Asterisk interface that rings for a user (``PJSIP/1001``); never derived from the
    extension, because desk phone, softphone and mobile fork of one agent differ."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    interface: Mapped[str] = mapped_column(String(128), unique=True)
    label: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(16), default="desk_phone")
    user: Mapped[User] = relationship(back_populates="devices")


class ApiToken(Base):
    """A login token; only its SHA-256 is stored, so a database dump leaks no sessions."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    user: Mapped[User] = relationship(lazy="joined")


# --- customers ----------------------------------------------------------------------------


class Account(Base, Timestamped, SoftDeleted, ContactPreferences):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    industry: Mapped[str | None] = mapped_column(String(100))
    website: Mapped[str | None] = mapped_column(String(254))
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    address: Mapped[str | None] = mapped_column(Text)
    city: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(2))
    lifecycle_stage: Mapped[str | None] = mapped_column(String(32))
    is_vip: Mapped[bool] = mapped_column(default=False)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)


class Contact(Base, Timestamped, SoftDeleted, ContactPreferences):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    # decision_maker, influencer, user, other
    account_role: Mapped[str | None] = mapped_column(String(32))
    job_title: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(8))
    lifecycle_stage: Mapped[str | None] = mapped_column(String(32))
    is_vip: Mapped[bool] = mapped_column(default=False)
    satisfaction: Mapped[int | None]
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    account: Mapped[Account | None] = relationship(lazy="joined")

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class LeadList(Base, Timestamped):
    __tablename__ = "lead_lists"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    call_script: Mapped[str | None] = mapped_column(Text)


class Lead(Base, Timestamped, SoftDeleted, ContactPreferences):
    __tablename__ = "leads"
    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    company: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    source: Mapped[str | None] = mapped_column(String(64))
    # new, contacted, qualified, unqualified, converted
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    rating: Mapped[str | None] = mapped_column(String(8))  # hot, warm, cold
    lead_list_id: Mapped[int | None] = mapped_column(ForeignKey("lead_lists.id"), index=True)
    language: Mapped[str | None] = mapped_column(String(8))
    is_vip: Mapped[bool] = mapped_column(default=False)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    converted_at: Mapped[dt.datetime | None]
    converted_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    converted_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    converted_deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id"), index=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Phone(Base, Timestamped):
    """Every phone of every customer record, normalized to E.164: the one lookup table.

    One number may belong to several records (a switchboard and its staff), so ``e164`` is
    indexed but not unique.
    """

    __tablename__ = "phones"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int]
    e164: Mapped[str] = mapped_column(String(20))
    raw: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="mobile")  # mobile, office, home, fax
    extension: Mapped[str | None] = mapped_column(String(16))
    is_primary: Mapped[bool] = mapped_column(default=False)
    __table_args__ = (
        Index("ix_phones_e164", "e164"),
        # Duplicate checks ask "this number, records of this type": without this index
        # SQLite scans uq_phones_owner by entity_type instead.
        Index("ix_phones_e164_entity", "e164", "entity_type"),
        Index("ix_phones_entity", "entity_type", "entity_id"),
        UniqueConstraint("entity_type", "entity_id", "e164", "extension", name="uq_phones_owner"),
    )


# --- sales --------------------------------------------------------------------------------


class Pipeline(Base, Timestamped):
    __tablename__ = "pipelines"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    is_default: Mapped[bool] = mapped_column(default=False)
    stages: Mapped[list[Stage]] = relationship(
        back_populates="pipeline",
        order_by="Stage.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class Stage(Base, Timestamped):
    __tablename__ = "stages"
    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    position: Mapped[int]
    probability: Mapped[int] = mapped_column(default=0)  # percent, for the forecast
    is_won: Mapped[bool] = mapped_column(default=False)
    is_lost: Mapped[bool] = mapped_column(default=False)
    pipeline: Mapped[Pipeline] = relationship(back_populates="stages")
    __table_args__ = (UniqueConstraint("pipeline_id", "position", name="uq_stages_position"),)


class Deal(Base, Timestamped, SoftDeleted):
    __tablename__ = "deals"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"), index=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id"), index=True)
    # Amount in the currency's major unit; IRR has no minor unit in practice.
    amount: Mapped[Decimal] = mapped_column(Numeric(24, 2), default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="IRR")
    expected_close: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8), default="open", index=True)  # open, won, lost
    won_lost_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[dt.datetime | None]
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    stage: Mapped[Stage] = relationship(lazy="joined")


class Case(Base, Timestamped, SoftDeleted):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # new, open, pending, resolved, closed
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    priority: Mapped[str] = mapped_column(String(8), default="normal")  # low..urgent
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    closed_at: Mapped[dt.datetime | None]


class Activity(Base, Timestamped, SoftDeleted):
    """A call, note, task or meeting on any customer record (one table: one timeline)."""

    __tablename__ = "activities"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # call, note, task, meeting
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str | None] = mapped_column(Text)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"))
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # calls
    pbx: Mapped[str | None] = mapped_column(String(64))
    call_uid: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str | None] = mapped_column(String(8))  # inbound, outbound, internal
    from_number: Mapped[str | None] = mapped_column(String(64))
    to_number: Mapped[str | None] = mapped_column(String(64))
    external_number: Mapped[str | None] = mapped_column(String(20), index=True)
    did: Mapped[str | None] = mapped_column(String(32))
    queue: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    started_at: Mapped[dt.datetime | None]
    answered_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    duration_s: Mapped[int | None]
    wait_s: Mapped[int | None]
    talk_s: Mapped[int | None]
    disposition: Mapped[str | None] = mapped_column(String(32))
    hangup_cause: Mapped[str | None] = mapped_column(String(64))
    recording_path: Mapped[str | None] = mapped_column(String(512))
    # tasks
    due_at: Mapped[dt.datetime | None]
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str | None] = mapped_column(String(12))  # open, done, cancelled
    priority: Mapped[str | None] = mapped_column(String(8))
    is_callback: Mapped[bool] = mapped_column(default=False)
    completed_at: Mapped[dt.datetime | None]
    # meetings
    starts_at: Mapped[dt.datetime | None]
    ends_at: Mapped[dt.datetime | None]
    location: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (
        CheckConstraint("kind in ('call','note','task','meeting')", name="kind"),
        UniqueConstraint("pbx", "call_uid", name="uq_activities_call"),
        Index("ix_activities_contact_time", "contact_id", "occurred_at"),
        Index("ix_activities_account_time", "account_id", "occurred_at"),
        Index("ix_activities_lead_time", "lead_id", "occurred_at"),
        Index("ix_activities_deal_time", "deal_id", "occurred_at"),
        Index("ix_activities_case_time", "case_id", "occurred_at"),
        # Reports aggregate calls over a period.
        Index("ix_activities_kind_started", "kind", "started_at"),
        # The call log reads a burst's calls by id (migration 0008 says why).
        Index(
            "ix_activities_call_uid",
            "call_uid",
            sqlite_where=text("call_uid IS NOT NULL"),
            postgresql_where=text("call_uid IS NOT NULL"),
        ),
    )


# --- marketing ----------------------------------------------------------------------------


class Segment(Base, Timestamped):
    __tablename__ = "segments"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    entity_type: Mapped[str] = mapped_column(String(16), default="contact")
    kind: Mapped[str] = mapped_column(String(8), default="dynamic")  # static, dynamic
    filter: Mapped[dict[str, Any]] = mapped_column(default=dict)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class SegmentMember(Base):
    __tablename__ = "segment_members"
    segment_id: Mapped[int] = mapped_column(
        ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    entity_id: Mapped[int] = mapped_column(primary_key=True)


class Campaign(Base, Timestamped, SoftDeleted):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(8), default="call")  # call, email
    status: Mapped[str] = mapped_column(String(12), default="draft")
    offer: Mapped[str | None] = mapped_column(Text)
    budget: Mapped[Decimal] = mapped_column(Numeric(24, 2), default=Decimal(0))
    cost: Mapped[Decimal] = mapped_column(Numeric(24, 2), default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="IRR")
    starts_at: Mapped[dt.datetime | None]
    ends_at: Mapped[dt.datetime | None]
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"))
    lead_list_id: Mapped[int | None] = mapped_column(ForeignKey("lead_lists.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    # Template shown to agents on this campaign's calls (crm/knowledge/scripts.py; 0006).
    call_script: Mapped[str | None] = mapped_column(Text)


# --- cross-cutting ------------------------------------------------------------------------


class Tag(Base, Timestamped):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    color: Mapped[str | None] = mapped_column(String(16))


class Tagging(Base):
    __tablename__ = "taggings"
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    entity_id: Mapped[int] = mapped_column(primary_key=True)
    __table_args__ = (Index("ix_taggings_entity", "entity_type", "entity_id"),)


class CustomFieldDef(Base, Timestamped):
    """An admin-defined field; values live in ``custom_field_values`` so they can be indexed."""

    __tablename__ = "custom_field_defs"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    field_type: Mapped[str] = mapped_column(String(8))  # text, number, date, bool, choice
    label_en: Mapped[str] = mapped_column(String(128))
    label_fa: Mapped[str] = mapped_column(String(128))
    choices: Mapped[list[Any]] = mapped_column(default=list)
    required: Mapped[bool] = mapped_column(default=False)
    sensitive: Mapped[bool] = mapped_column(default=False)
    __table_args__ = (UniqueConstraint("entity_type", "key", name="uq_custom_field_defs_key"),)


class CustomFieldValue(Base):
    __tablename__ = "custom_field_values"
    id: Mapped[int] = mapped_column(primary_key=True)
    field_id: Mapped[int] = mapped_column(ForeignKey("custom_field_defs.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int]
    value_text: Mapped[str | None] = mapped_column(String(1000))
    value_number: Mapped[Decimal | None] = mapped_column(Numeric(30, 6))
    __table_args__ = (
        UniqueConstraint("field_id", "entity_id", name="uq_custom_field_values_owner"),
        Index("ix_cfv_text", "field_id", "value_text"),
        Index("ix_cfv_number", "field_id", "value_number"),
        Index("ix_cfv_entity", "entity_type", "entity_id"),
    )


class Document(Base, Timestamped):
    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int]
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(512))
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    __table_args__ = (Index("ix_documents_entity", "entity_type", "entity_id"),)


class AuditEntry(Base):
    """Who changed what and when; ``changes`` holds ``{field: [old, new]}``."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[int | None]
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id", "id"),)


class SearchDoc(Base):
    """Folded searchable text per record; FTS5 (SQLite) or trigram (PostgreSQL) indexes it."""

    __tablename__ = "search_docs"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int]
    body: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (UniqueConstraint("entity_type", "entity_id", name="uq_search_docs_owner"),)


class ImportBatch(Base, Timestamped):
    __tablename__ = "import_batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    on_duplicate: Mapped[str] = mapped_column(String(8), default="skip")  # skip, update
    status: Mapped[str] = mapped_column(String(12), default="running")
    total_rows: Mapped[int] = mapped_column(default=0)
    created_count: Mapped[int] = mapped_column(default=0)
    updated_count: Mapped[int] = mapped_column(default=0)
    skipped_count: Mapped[int] = mapped_column(default=0)
    rejected_count: Mapped[int] = mapped_column(default=0)
    report_path: Mapped[str | None] = mapped_column(String(512))
    reverted_at: Mapped[dt.datetime | None]


class ImportItem(Base):
    """What one import did to one record, so the import can be reverted."""

    __tablename__ = "import_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id", ondelete="CASCADE"))
    entity_id: Mapped[int]
    action: Mapped[str] = mapped_column(String(8))  # created, updated
    previous: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    __table_args__ = (Index("ix_import_items_batch", "batch_id"),)


CUSTOMER_MODELS: dict[str, type[Base]] = {"account": Account, "contact": Contact, "lead": Lead}

ENTITY_MODELS: dict[str, type[Base]] = {
    **CUSTOMER_MODELS,
    "deal": Deal,
    "case": Case,
    "activity": Activity,
    "campaign": Campaign,
    "segment": Segment,
    "lead_list": LeadList,
    "pipeline": Pipeline,
    "team": Team,
    "user": User,
    "tag": Tag,
    "custom_field": CustomFieldDef,
    "document": Document,
}


# --- routing ------------------------------------------------------------------------------
# FastAGI call routing (cti/routing): rules are data edited over the API and versioned in the
# audit log; every decision the gateway answers Asterisk with is kept with the call.


class RoutingRule(Base, Timestamped):
    """One routing rule: conditions on the call and the caller's CRM record, and an action.

    ``conditions`` and ``action`` hold the JSON the API validated (``cti.routing.rules``);
    rules are tried in ``position`` order. ``version`` counts edits so a stored decision
    names exactly which version of the rule decided it.
    """

    __tablename__ = "routing_rules"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(index=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    match: Mapped[str] = mapped_column(String(3), default="all")  # all, any
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    action: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=1)
    __table_args__ = (CheckConstraint("match in ('all','any')", name="match"),)


class RoutingCalendar(Base, Timestamped):
    """Business hours per weekday and holiday dates (Gregorian), in the gateway's timezone."""

    __tablename__ = "routing_calendars"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # {"sat": [["08:00", "17:00"]], ..., "fri": []}
    hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # [{"date": "2026-03-21", "name": "Nowruz", "jalali": "1405-01-01"}]
    holidays: Mapped[list[Any]] = mapped_column(default=list)


class RoutingDecision(Base):
    """What the gateway answered one AGI routing request with, why, and how long it took."""

    __tablename__ = "routing_decisions"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    call_uid: Mapped[str | None] = mapped_column(String(64), index=True)  # agi_uniqueid
    channel: Mapped[str | None] = mapped_column(String(128))
    caller: Mapped[str | None] = mapped_column(String(64))  # caller id as Asterisk sent it
    caller_e164: Mapped[str | None] = mapped_column(String(20))
    did: Mapped[str | None] = mapped_column(String(32))
    entity_type: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[int | None]
    # No foreign key: a deleted rule's decisions keep its id (its versions are in the audit log).
    rule_id: Mapped[int | None]
    rule_version: Mapped[int | None]
    route: Mapped[str] = mapped_column(String(16))  # agent, queue, voicemail, external, hangup
    target: Mapped[str | None] = mapped_column(String(255))  # dial string, queue, mailbox...
    agent_id: Mapped[int | None]
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    fallback: Mapped[bool] = mapped_column(default=False)
    __table_args__ = (
        # Lead caps count an agent's decisions of the last hour/day.
        Index("ix_routing_decisions_agent_time", "agent_id", "decided_at"),
        Index("ix_routing_decisions_decided_at", "decided_at"),
    )


# --- call recordings ----------------------------------------------------------------------
# recordings/: every MixMonitor file the PBX writes for a call is ingested into storage and
# hangs off the call activity (found by (pbx, call_uid)), so it shows on the customer, deal and
# case of that call. The row exists from the first sign of the recording, whatever happens to
# the file, so a call never loses its recording metadata.

RECORDING_STATUSES = ("pending", "ingesting", "stored", "missing", "corrupt", "failed", "deleted")


class Recording(Base, Timestamped):
    """One recording file (one MixMonitor run) of a call, and what became of it.

    ``source`` is the file name as the PBX wrote it; ``storage_key`` is where the ingested
    copy lives in the gateway's storage. ``pauses`` lists ``[start, end]`` ISO times during
    which the agent muted the recording (card numbers); the audio there is silence.
    """

    __tablename__ = "recordings"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    pbx: Mapped[str] = mapped_column(String(64))
    call_uid: Mapped[str] = mapped_column(String(64))
    # Set once the call logger's activity exists (it may be written after the recording).
    activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activities.id", ondelete="SET NULL"), index=True
    )
    channel: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(512))
    started_by: Mapped[str] = mapped_column(String(8), default="dialplan")  # dialplan, agent
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    next_retry_at: Mapped[dt.datetime | None]
    give_up_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    stopped_at: Mapped[dt.datetime | None]
    call_ended_at: Mapped[dt.datetime | None]
    pauses: Mapped[list[Any]] = mapped_column(default=list)
    storage_key: Mapped[str | None] = mapped_column(String(512))
    format: Mapped[str | None] = mapped_column(String(8))  # wav, opus, mp3
    content_type: Mapped[str | None] = mapped_column(String(64))
    duration_s: Mapped[float | None]
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    source_size: Mapped[int | None] = mapped_column(BigInteger)
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    stored_at: Mapped[dt.datetime | None]
    # Retention (recordings/retention.py): queue and campaign are copied from the call so the
    # rules apply without joins; ``keep_forever`` is a hold on this recording (records tagged
    # with the hold tag keep their calls' recordings too).
    queue: Mapped[str | None] = mapped_column(String(64))
    campaign_id: Mapped[int | None]
    keep_forever: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[dt.datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (
        CheckConstraint(
            "status in ('pending','ingesting','stored','missing','corrupt','failed','deleted')",
            name="status",
        ),
        UniqueConstraint("pbx", "source", name="uq_recordings_source"),
        Index("ix_recordings_call", "pbx", "call_uid"),
        Index("ix_recordings_due", "status", "next_retry_at"),
        Index("ix_recordings_age", "status", "started_at"),
    )


class RecordingRetentionRule(Base, Timestamped):
    """Keep a queue's or a campaign's recordings ``keep_days`` days after the call.

    A rule with neither queue nor campaign is the default; the most specific rule wins
    (campaign, then queue, then default). ``keep_days`` null means keep forever.
    """

    __tablename__ = "recording_retention_rules"
    id: Mapped[int] = mapped_column(primary_key=True)
    queue: Mapped[str | None] = mapped_column(String(64))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    keep_days: Mapped[int | None]
    description: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        UniqueConstraint("queue", "campaign_id", name="uq_recording_retention_rules_scope"),
    )


# --- outbound dialer and automation (issue 8b: cti/dialer/, crm/automation/, migration 0005) -
# A call campaign (``campaigns.channel == "call"``) gets a dialer configuration and a call
# list: one entry per customer with its state, attempts and next attempt time. Automation
# rules are data (kind + validated JSON config) that run on record events and on schedules;
# every run is written to the audit log.

DIALER_MODES = ("preview", "progressive")
DIALER_ENTRY_STATES = ("pending", "offered", "dialing", "wrapup", "done", "exhausted", "excluded")
AUTOMATION_KINDS = (
    "inactive_customer",
    "stale_prospect",
    "user_deactivated",
    "stage_action",
    "lead_assignment",
    "reminders",
)


class DialerCampaign(Base, Timestamped):
    """How a call campaign dials: mode, agents, attempts, retry delays, calling hours and
    its disposition codes. Whether it dials at all is ``campaigns.status == "running"``."""

    __tablename__ = "dialer_campaigns"
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(String(12), default="progressive")
    # Agents who take this campaign's calls; empty: the members of the campaign's team.
    agent_ids: Mapped[list[Any]] = mapped_column(default=list)
    max_attempts: Mapped[int] = mapped_column(default=3)
    # {"busy": 10, "no_answer": 60, "failed": 30, "skipped": 60} minutes
    retry_minutes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Customer's local time: "09:00-13:00,16:00-20:00"; days 0=Monday .. 6=Sunday.
    calling_hours: Mapped[str] = mapped_column(String(128), default="09:00-20:00")
    calling_days: Mapped[list[Any]] = mapped_column(default=list)
    # Customers without a timezone of their own are in this one (None: the gateway's).
    timezone: Mapped[str | None] = mapped_column(String(64))
    # [{"code": "sale", "en": "Sale", "fa": "فروش", "outcome": "final"}, ...]
    dispositions: Mapped[list[Any]] = mapped_column(default=list)
    ring_timeout_s: Mapped[int] = mapped_column(default=30)
    wrapup_s: Mapped[int] = mapped_column(default=30)
    auto_answer: Mapped[bool] = mapped_column(default=True)
    caller_id: Mapped[str | None] = mapped_column(String(80))
    pbx: Mapped[str | None] = mapped_column(String(64))
    list_built_at: Mapped[dt.datetime | None]
    __table_args__ = (CheckConstraint("mode in ('preview','progressive')", name="mode"),)


class DialerEntry(Base, Timestamped):
    """One customer on a call campaign's list and where dialling them stands."""

    __tablename__ = "dialer_entries"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(16))  # contact, lead, account
    entity_id: Mapped[int]
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164, chosen when listed
    state: Mapped[str] = mapped_column(String(10), default="pending")
    reason: Mapped[str | None] = mapped_column(String(64))  # why excluded / waiting
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    last_attempt_at: Mapped[dt.datetime | None]
    last_result: Mapped[str | None] = mapped_column(String(16))
    last_cause: Mapped[int | None]
    disposition: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(default=0)  # callbacks first
    # The agent the entry is offered to / dialled for (and then the last one).
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # A callback promised by this agent (None: anyone of the campaign may call back).
    callback_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    callback_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("activities.id", ondelete="SET NULL")
    )
    reserved_at: Mapped[dt.datetime | None]  # offered or dialled at
    pbx: Mapped[str | None] = mapped_column(String(64))
    call_id: Mapped[str | None] = mapped_column(String(64))
    originate_id: Mapped[str | None] = mapped_column(String(64))
    # [{"at": ..., "result": "busy", "cause": 17, "agent_id": 3, "call_id": "..."}, ...]
    history: Mapped[list[Any]] = mapped_column(default=list)
    __table_args__ = (
        CheckConstraint(
            "state in ('pending','offered','dialing','wrapup','done','exhausted','excluded')",
            name="state",
        ),
        UniqueConstraint(
            "campaign_id", "entity_type", "entity_id", name="uq_dialer_entries_record"
        ),
        Index("ix_dialer_entries_due", "campaign_id", "state", "next_attempt_at"),
        Index("ix_dialer_entries_agent", "agent_id", "state"),
        Index("ix_dialer_entries_call", "pbx", "call_id"),
    )


class AutomationRule(Base, Timestamped):
    """One automation rule: its kind says when it runs (an event or a schedule) and what it
    does; ``config`` holds the JSON ``crm.automation.rules`` validated. ``state`` keeps
    what a rule carries between runs (the round-robin position)."""

    __tablename__ = "automation_rules"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=1)
    runs: Mapped[int] = mapped_column(default=0)
    last_run_at: Mapped[dt.datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(12))  # ok, error
    last_detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (
        CheckConstraint(
            "kind in ('inactive_customer','stale_prospect','user_deactivated','stage_action',"
            "'lead_assignment','reminders')",
            name="kind",
        ),
    )


class LeadAssignment(Base):
    """A lead given to a user by an assignment rule; the caps count these, and an agent
    returns a lead through one (a supervisor approves or rejects the return)."""

    __tablename__ = "lead_assignments"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("automation_rules.id", ondelete="SET NULL")
    )
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # assigned, return_requested, returned, return_rejected
    status: Mapped[str] = mapped_column(String(16), default="assigned")
    return_reason: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[dt.datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[dt.datetime | None]
    __table_args__ = (
        CheckConstraint(
            "status in ('assigned','return_requested','returned','return_rejected')",
            name="status",
        ),
        Index("ix_lead_assignments_user_time", "user_id", "assigned_at"),
    )


class ActivityReminder(Base):
    """A reminder pushed to a user's desktop for a task's due time or a meeting's start;
    unique per due time, so each is sent once even with several gateways (a moved due time
    is reminded again)."""

    __tablename__ = "activity_reminders"
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    due_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    dismissed_at: Mapped[dt.datetime | None]
    __table_args__ = (
        UniqueConstraint("activity_id", "user_id", "due_at", name="uq_activity_reminders_due"),
        Index("ix_activity_reminders_user", "user_id", "sent_at"),
    )


# --- knowledge base (issue 8c: crm/knowledge/, migration 0006) ----------------------------
# Articles agents read during calls. Every edit is a new version; a draft becomes what
# agents see only when a supervisor or admin approves it (``current_version_id``). The
# approved text is indexed in ``search_docs`` as ``kb_article`` (drafts as ``kb_draft``).

KB_LANGUAGES = ("fa", "en")
KB_VERSION_STATUSES = ("draft", "approved", "superseded", "rejected")


class KbCategory(Base, Timestamped):
    __tablename__ = "kb_categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    name_fa: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(default=0)


class KbArticle(Base, Timestamped, SoftDeleted):
    __tablename__ = "kb_articles"
    id: Mapped[int] = mapped_column(primary_key=True)
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("kb_categories.id", ondelete="SET NULL"), index=True
    )
    language: Mapped[str] = mapped_column(String(2), default="fa")
    # The approved version agents read; no foreign key (the versions point here, and a
    # cycle of keys would complicate every insert). The service keeps it consistent.
    current_version_id: Mapped[int | None]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    __table_args__ = (CheckConstraint("language in ('fa','en')", name="language"),)


class KbArticleVersion(Base):
    __tablename__ = "kb_article_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"))
    number: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12), default="draft")
    note: Mapped[str | None] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: Mapped[dt.datetime | None]
    __table_args__ = (
        UniqueConstraint("article_id", "number", name="uq_kb_article_versions_number"),
        CheckConstraint("status in ('draft','approved','superseded','rejected')", name="status"),
    )


# --- campaigns and e-mail (issue 8a: crm/campaigns/) --------------------------------------
# Segments and campaigns above are the CRM's own; these tables carry e-mail campaigns: the
# templates, each campaign's sending setup, one row per recipient with everything that
# happened to that message (sent, bounced, opened, clicked, replied, unsubscribed), the raw
# facts behind those (events, inbound mail) and the addresses that are never mailed again.

EMAIL_MESSAGE_STATUSES = ("queued", "sending", "sent", "failed", "bounced", "skipped")


class EmailTemplate(Base, Timestamped):
    """An e-mail in Persian and English with personal fields (``{{first_name}}``).

    Each recipient gets the version of their language (``language`` of the record), else
    ``default_language``; an empty version falls back to the other one.
    """

    __tablename__ = "email_templates"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    default_language: Mapped[str] = mapped_column(String(2), default="fa")
    subject_fa: Mapped[str] = mapped_column(String(300), default="")
    subject_en: Mapped[str] = mapped_column(String(300), default="")
    html_fa: Mapped[str] = mapped_column(Text, default="")
    html_en: Mapped[str] = mapped_column(Text, default="")
    # Plain-text parts; derived from the HTML when empty.
    text_fa: Mapped[str | None] = mapped_column(Text)
    text_en: Mapped[str | None] = mapped_column(Text)


class EmailCampaign(Base, Timestamped):
    """How a campaign with channel ``email`` is sent: template, sender and pace."""

    __tablename__ = "email_campaigns"
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    template_id: Mapped[int] = mapped_column(ForeignKey("email_templates.id"), index=True)
    from_address: Mapped[str | None] = mapped_column(String(254))
    from_name: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(254))
    rate_per_minute: Mapped[int] = mapped_column(default=60)
    track_opens: Mapped[bool] = mapped_column(default=True)
    track_clicks: Mapped[bool] = mapped_column(default=True)
    send_started_at: Mapped[dt.datetime | None]
    send_finished_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class EmailMessage(Base):
    """One recipient of one e-mail campaign and what became of the message."""

    __tablename__ = "email_messages"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int]
    to_address: Mapped[str | None] = mapped_column(String(254))
    language: Mapped[str] = mapped_column(String(2), default="fa")
    # RFC 5322 Message-ID without the angle brackets; replies and bounces name it.
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    # no_email, opted_out, suppressed, duplicate_address, deleted
    skip_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # When a sender claimed it (status "sending"); a claim older than the SMTP timeout is
    # a crashed run's, never another gateway's in-flight message.
    claimed_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    bounced_at: Mapped[dt.datetime | None]
    bounce_kind: Mapped[str | None] = mapped_column(String(8))  # hard, soft
    bounce_status: Mapped[str | None] = mapped_column(String(16))  # DSN status, e.g. 5.1.1
    opened_at: Mapped[dt.datetime | None]
    open_count: Mapped[int] = mapped_column(default=0)
    clicked_at: Mapped[dt.datetime | None]
    click_count: Mapped[int] = mapped_column(default=0)
    replied_at: Mapped[dt.datetime | None]
    unsubscribed_at: Mapped[dt.datetime | None]
    __table_args__ = (
        CheckConstraint(
            "status in ('queued','sending','sent','failed','bounced','skipped')", name="status"
        ),
        UniqueConstraint("campaign_id", "entity_type", "entity_id", name="uq_email_messages_rcpt"),
        Index("ix_email_messages_campaign_status", "campaign_id", "status"),
        Index("ix_email_messages_entity", "entity_type", "entity_id"),
        Index("ix_email_messages_to", "to_address"),
    )


class EmailEvent(Base):
    """One thing that happened to a sent message: open, click, bounce, delay, reply,
    auto_reply, unsubscribe; ``detail`` has the URL clicked, the DSN status, ..."""

    __tablename__ = "email_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("email_messages.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(12))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class InboundEmail(Base):
    """Every message fed back to the gateway (bounces, replies), matched or not, so nothing
    is lost and a message fed twice is recognised by its Message-ID."""

    __tablename__ = "inbound_emails"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(12))  # bounce, delay, reply, auto_reply, unknown
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    from_address: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(300))
    email_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_messages.id", ondelete="SET NULL"), index=True
    )
    entity_type: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[int | None]
    activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activities.id", ondelete="SET NULL")
    )
    size: Mapped[int] = mapped_column(default=0)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class EmailSuppression(Base):
    """An address never mailed again (unsubscribed, hard bounce): checked at send time."""

    __tablename__ = "email_suppressions"
    address: Mapped[str] = mapped_column(String(254), primary_key=True)  # lower case
    reason: Mapped[str] = mapped_column(String(16))  # unsubscribe, bounce, complaint, manual
    entity_type: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[int | None]
    email_message_id: Mapped[int | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
