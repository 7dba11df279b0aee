"""indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Indexes the first tables lacked: duplicate checks by (number, record type); deletes, merges
and import reverts find records pointing at a merged or converted record without a scan;
reports read calls by period.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_phones_e164_entity", "phones", ["e164", "entity_type"]),
    ("ix_accounts_merged_into_id", "accounts", ["merged_into_id"]),
    ("ix_contacts_merged_into_id", "contacts", ["merged_into_id"]),
    ("ix_leads_merged_into_id", "leads", ["merged_into_id"]),
    ("ix_leads_converted_contact_id", "leads", ["converted_contact_id"]),
    ("ix_leads_converted_account_id", "leads", ["converted_account_id"]),
    ("ix_leads_converted_deal_id", "leads", ["converted_deal_id"]),
    ("ix_activities_kind_started", "activities", ["kind", "started_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
