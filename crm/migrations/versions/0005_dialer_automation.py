"""dialer automation

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Outbound call campaigns and automation rules (issue 8b): each call campaign's dialer setup
and call list (state, attempts, next attempt, result, disposition per customer); automation
rules as data, lead assignments (caps and returns) and the reminders sent for tasks and
meetings.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "automation_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("last_run_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.String(length=12), nullable=True),
        sa.Column("last_detail", sa.JSON(), nullable=False),
        sa.Column("created_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind in ('inactive_customer','stale_prospect','user_deactivated','stage_action','lead_assignment','reminders')",
            name=op.f("ck_automation_rules_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_rules")),
    )
    op.create_table(
        "dialer_campaigns",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=12), nullable=False),
        sa.Column("agent_ids", sa.JSON(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_minutes", sa.JSON(), nullable=False),
        sa.Column("calling_hours", sa.String(length=128), nullable=False),
        sa.Column("calling_days", sa.JSON(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("dispositions", sa.JSON(), nullable=False),
        sa.Column("ring_timeout_s", sa.Integer(), nullable=False),
        sa.Column("wrapup_s", sa.Integer(), nullable=False),
        sa.Column("auto_answer", sa.Boolean(), nullable=False),
        sa.Column("caller_id", sa.String(length=80), nullable=True),
        sa.Column("pbx", sa.String(length=64), nullable=True),
        sa.Column("list_built_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "mode in ('preview','progressive')", name=op.f("ck_dialer_campaigns_mode")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_dialer_campaigns_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_dialer_campaigns")),
    )
    op.create_table(
        "lead_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("assigned_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("return_reason", sa.Text(), nullable=True),
        sa.Column("requested_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status in ('assigned','return_requested','returned','return_rejected')",
            name=op.f("ck_lead_assignments_status"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["users.id"],
            name=op.f("fk_lead_assignments_decided_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_lead_assignments_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["automation_rules.id"],
            name=op.f("fk_lead_assignments_rule_id_automation_rules"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_lead_assignments_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_assignments")),
    )
    with op.batch_alter_table("lead_assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lead_assignments_lead_id"), ["lead_id"], unique=False)
        batch_op.create_index(
            "ix_lead_assignments_user_time", ["user_id", "assigned_at"], unique=False
        )

    op.create_table(
        "activity_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("due_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("dismissed_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_activity_reminders_activity_id_activities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_activity_reminders_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_reminders")),
        sa.UniqueConstraint("activity_id", "user_id", "due_at", name="uq_activity_reminders_due"),
    )
    with op.batch_alter_table("activity_reminders", schema=None) as batch_op:
        batch_op.create_index("ix_activity_reminders_user", ["user_id", "sent_at"], unique=False)

    op.create_table(
        "dialer_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_result", sa.String(length=16), nullable=True),
        sa.Column("last_cause", sa.Integer(), nullable=True),
        sa.Column("disposition", sa.String(length=32), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("callback_agent_id", sa.Integer(), nullable=True),
        sa.Column("callback_task_id", sa.Integer(), nullable=True),
        sa.Column("reserved_at", crm.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pbx", sa.String(length=64), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("originate_id", sa.String(length=64), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("created_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", crm.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state in ('pending','offered','dialing','wrapup','done','exhausted','excluded')",
            name=op.f("ck_dialer_entries_state"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["users.id"],
            name=op.f("fk_dialer_entries_agent_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["callback_agent_id"],
            ["users.id"],
            name=op.f("fk_dialer_entries_callback_agent_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["callback_task_id"],
            ["activities.id"],
            name=op.f("fk_dialer_entries_callback_task_id_activities"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_dialer_entries_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dialer_entries")),
        sa.UniqueConstraint(
            "campaign_id", "entity_type", "entity_id", name="uq_dialer_entries_record"
        ),
    )
    with op.batch_alter_table("dialer_entries", schema=None) as batch_op:
        batch_op.create_index("ix_dialer_entries_agent", ["agent_id", "state"], unique=False)
        batch_op.create_index("ix_dialer_entries_call", ["pbx", "call_id"], unique=False)
        batch_op.create_index(
            "ix_dialer_entries_due", ["campaign_id", "state", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dialer_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_dialer_entries_due")
        batch_op.drop_index("ix_dialer_entries_call")
        batch_op.drop_index("ix_dialer_entries_agent")

    op.drop_table("dialer_entries")
    with op.batch_alter_table("activity_reminders", schema=None) as batch_op:
        batch_op.drop_index("ix_activity_reminders_user")

    op.drop_table("activity_reminders")
    with op.batch_alter_table("lead_assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_assignments_user_time")
        batch_op.drop_index(batch_op.f("ix_lead_assignments_lead_id"))

    op.drop_table("lead_assignments")
    op.drop_table("dialer_campaigns")
    op.drop_table("automation_rules")
