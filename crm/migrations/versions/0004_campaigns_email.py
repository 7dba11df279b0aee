"""campaigns email

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Segments, campaigns and email campaigns (issue 8, crm/campaigns/): e-mail templates, each
campaign's sending setup, one row per recipient with its fate, the events and inbound mail
(bounces, replies) behind it, and the addresses never mailed again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_suppressions",
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=True),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column("email_message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_email_suppressions")),
    )
    op.create_table(
        "email_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("default_language", sa.String(length=2), nullable=False),
        sa.Column("subject_fa", sa.String(length=300), nullable=False),
        sa.Column("subject_en", sa.String(length=300), nullable=False),
        sa.Column("html_fa", sa.Text(), nullable=False),
        sa.Column("html_en", sa.Text(), nullable=False),
        sa.Column("text_fa", sa.Text(), nullable=True),
        sa.Column("text_en", sa.Text(), nullable=True),
        sa.Column("created_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_email_templates_name")),
    )
    op.create_table(
        "email_campaigns",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("from_address", sa.String(length=254), nullable=True),
        sa.Column("from_name", sa.String(length=200), nullable=True),
        sa.Column("reply_to", sa.String(length=254), nullable=True),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False),
        sa.Column("track_opens", sa.Boolean(), nullable=False),
        sa.Column("track_clicks", sa.Boolean(), nullable=False),
        sa.Column("send_started_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("send_finished_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_email_campaigns_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["email_templates.id"],
            name=op.f("fk_email_campaigns_template_id_email_templates"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_email_campaigns")),
    )
    with op.batch_alter_table("email_campaigns", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_campaigns_template_id"), ["template_id"], unique=False
        )

    op.create_table(
        "email_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("skip_reason", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("bounced_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("bounce_kind", sa.String(length=8), nullable=True),
        sa.Column("bounce_status", sa.String(length=16), nullable=True),
        sa.Column("opened_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("open_count", sa.Integer(), nullable=False),
        sa.Column("clicked_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("click_count", sa.Integer(), nullable=False),
        sa.Column("replied_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status in ('queued','sending','sent','failed','bounced','skipped')",
            name=op.f("ck_email_messages_status"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_email_messages_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_messages")),
        sa.UniqueConstraint(
            "campaign_id", "entity_type", "entity_id", name="uq_email_messages_rcpt"
        ),
        sa.UniqueConstraint("message_id", name=op.f("uq_email_messages_message_id")),
    )
    with op.batch_alter_table("email_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_email_messages_campaign_status", ["campaign_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_email_messages_entity", ["entity_type", "entity_id"], unique=False
        )
        batch_op.create_index("ix_email_messages_to", ["to_address"], unique=False)

    op.create_table(
        "email_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["email_messages.id"],
            name=op.f("fk_email_events_message_id_email_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_events")),
    )
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_events_message_id"), ["message_id"], unique=False
        )

    op.create_table(
        "inbound_emails",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("received_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("from_address", sa.String(length=254), nullable=True),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column(
            "email_message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("entity_type", sa.String(length=16), nullable=True),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column("activity_id", sa.Integer(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_inbound_emails_activity_id_activities"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["email_message_id"],
            ["email_messages.id"],
            name=op.f("fk_inbound_emails_email_message_id_email_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_emails")),
        sa.UniqueConstraint("message_id", name=op.f("uq_inbound_emails_message_id")),
    )
    with op.batch_alter_table("inbound_emails", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_emails_email_message_id"), ["email_message_id"], unique=False
        )

    # ### end Alembic commands ###


def downgrade() -> None:
    with op.batch_alter_table("inbound_emails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_emails_email_message_id"))

    op.drop_table("inbound_emails")
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_events_message_id"))

    op.drop_table("email_events")
    with op.batch_alter_table("email_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_email_messages_to")
        batch_op.drop_index("ix_email_messages_entity")
        batch_op.drop_index("ix_email_messages_campaign_status")

    op.drop_table("email_messages")
    with op.batch_alter_table("email_campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_campaigns_template_id"))

    op.drop_table("email_campaigns")
    op.drop_table("email_templates")
    op.drop_table("email_suppressions")
    # ### end Alembic commands ###
