"""call id index

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

The call log reads a burst's calls by call id in one statement (``call_uid IN (...)``). The
unique (pbx, call_uid) index serves it only while SQLite's statistics know that calls are a
part of the activities: analyzed when there were none (every activity a note or task: pbx
and call_uid NULL), SQLite reads the whole table instead, for every burst. A partial index
of the call ids alone keeps the plan an index search whatever the statistics say.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CALLS = sa.text("call_uid IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_activities_call_uid",
        "activities",
        ["call_uid"],
        sqlite_where=_CALLS,
        postgresql_where=_CALLS,
    )


def downgrade() -> None:
    op.drop_index("ix_activities_call_uid", table_name="activities")
