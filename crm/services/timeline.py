"""A record's timeline (its activities, newest first) and its change history."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.errors import ValidationFailed
from crm.models import Activity, AuditEntry, User
from crm.permissions import Principal
from crm.services import records
from crm.services.entities import SPECS

_TIMELINE_FK = {
    "contact": "contact_id",
    "account": "account_id",
    "lead": "lead_id",
    "deal": "deal_id",
    "case": "case_id",
}


def _cursor(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    try:
        at, _, rid = (
            base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().partition("|")
        )
        return at, int(rid)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed.one("cursor", "invalid cursor") from None


async def timeline(
    session: AsyncSession,
    p: Principal,
    entity: str,
    rid: int,
    cursor: str | None = None,
    limit: int = 50,
    kinds: list[str] | None = None,
) -> dict[str, Any]:
    """All activities of a record, newest first. For an account this includes the
    activities of its contacts, as a CRM user expects from a company's history."""
    if entity not in _TIMELINE_FK:
        raise ValidationFailed.one("entity", f"{entity} has no timeline")
    await records.get(session, p, SPECS[entity], rid)  # scope check
    p.require("activity", "view")
    fk = getattr(Activity, _TIMELINE_FK[entity])
    cond = fk == rid
    if entity == "account":
        from crm.models import Contact

        cond = or_(
            cond, Activity.contact_id.in_(select(Contact.id).where(Contact.account_id == rid))
        )
    stmt = select(Activity).where(cond, Activity.deleted_at.is_(None))
    stmt = stmt.where(p.scope_clause(Activity)) if not p.is_admin else stmt
    if kinds:
        stmt = stmt.where(Activity.kind.in_(kinds))
    cur = _cursor(cursor)
    if cur:
        import datetime as dt

        at = dt.datetime.fromisoformat(cur[0])
        stmt = stmt.where(
            or_(Activity.occurred_at < at, and_(Activity.occurred_at == at, Activity.id < cur[1]))
        )
    limit = max(1, min(limit, 200))
    rows = list(
        await session.scalars(
            stmt.order_by(Activity.occurred_at.desc(), Activity.id.desc()).limit(limit + 1)
        )
    )
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        nxt = (
            base64.urlsafe_b64encode(f"{last.occurred_at.isoformat()}|{last.id}".encode())
            .decode()
            .rstrip("=")
        )
    items = await records.present_many(session, p, SPECS["activity"], rows)
    return {"items": items, "next_cursor": nxt}


async def history(
    session: AsyncSession, p: Principal, entity: str, rid: int, limit: int = 200
) -> list[dict[str, Any]]:
    """Every audited change of a record, oldest first, with who made it."""
    if entity in SPECS:
        # Deleted records keep their history; check scope on the row itself.
        spec = SPECS[entity]
        p.require(entity, "view")
        obj = await session.get(spec.model, rid)
        if obj is None or not p.sees(obj):
            from crm.errors import NotFound

            raise NotFound(f"no {entity} {rid}")
    else:
        p.require("audit", "view")
    rows = await session.execute(
        select(AuditEntry, User.username)
        .outerjoin(User, User.id == AuditEntry.user_id)
        .where(AuditEntry.entity_type == entity, AuditEntry.entity_id == rid)
        .order_by(AuditEntry.id)
        .limit(limit)
    )
    masked = set(p.masked(entity))
    if "sensitive_custom" in masked:
        from crm.services.extras import field_defs

        defs = await field_defs(session, entity)
        masked |= {f"custom.{k}" for k, d in defs.items() if d.sensitive}
    out = []
    for entry, username in rows:
        changes = {k: (["****", "****"] if k in masked else v) for k, v in entry.changes.items()}
        out.append(
            {
                "id": entry.id,
                "at": audit.jsonable(entry.at),
                "user_id": entry.user_id,
                "username": username,
                "action": entry.action,
                "changes": changes,
                "detail": entry.detail,
            }
        )
    return out
