"""The audit log: every change with who, when and each field's previous and new value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import AuditEntry


def jsonable(value: Any) -> Any:
    """Values as they are kept in the log's JSON."""
    if isinstance(value, dt.datetime):
        # Always UTC on the way out, whatever offset the client sent.
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for every field whose value changed."""
    out: dict[str, list[Any]] = {}
    for key in sorted(set(before) | set(after)):
        old, new = jsonable(before.get(key)), jsonable(after.get(key))
        if old != new:
            out[key] = [old, new]
    return out


def record(
    session: AsyncSession,
    user_id: int | None,
    action: str,
    entity_type: str | None = None,
    entity_id: int | None = None,
    changes: dict[str, list[Any]] | None = None,
    **detail: Any,
) -> AuditEntry:
    """Add an audit entry to the session's transaction (it commits or rolls back with it)."""
    entry = AuditEntry(
        user_id=user_id,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        changes=changes or {},
        detail=jsonable(detail),
    )
    session.add(entry)
    return entry
