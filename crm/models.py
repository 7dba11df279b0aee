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
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))


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
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
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
    converted_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    converted_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    converted_deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id"))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"))

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
