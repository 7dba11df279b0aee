"""Adoption report: is the CRM used? Per user, from the audit log and the deals:

* logins in the period (``login`` audit entries) and the last login (``users.last_login_at``);
* activities created (``create`` entries on activities, by kind), records created and
  record updates (``create`` / ``update`` entries on any record);
* opportunities lost without a reason: the user's deals lost in the period whose
  ``won_lost_reason`` is empty.

Every active user in the audience has a row, zeros included: the users who never log in are
the point of this report.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.models import Activity, AuditEntry, Deal, User
from crm.reports.base import Audience, Column, Filters, Report, uid_key

COLUMNS = [
    Column("user", "User", "کاربر", "text"),
    Column("logins", "Logins", "ورودها"),
    Column("last_login_at", "Last login", "آخرین ورود", "datetime"),
    Column("activities_created", "Activities logged", "فعالیت‌های ثبت‌شده"),
    Column("records_created", "Records created", "رکوردهای ایجادشده"),
    Column("records_updated", "Record updates", "ویرایش رکوردها"),
    Column("deals_lost", "Deals lost", "معامله‌های ازدست‌رفته"),
    Column("lost_without_reason", "Lost without a reason", "ازدست‌رفته بدون دلیل"),
]

_COUNTS = (
    "logins",
    "activities_created",
    "records_created",
    "records_updated",
    "deals_lost",
    "lost_without_reason",
)


async def adoption_report(session: AsyncSession, f: Filters, aud: Audience, dialect: str) -> Report:
    e = AuditEntry
    in_period = [e.at >= f.period.start, e.at < f.period.end, e.user_id.is_not(None)]
    in_period.append(aud.users_clause(e.user_id))
    stats: dict[int, dict[str, Any]] = defaultdict(_zero)
    for uid, action, entity, n in await session.execute(
        select(e.user_id, e.action, e.entity_type, func.count(e.id))
        .where(*in_period, e.action.in_(["login", "create", "update"]))
        .group_by(e.user_id, e.action, e.entity_type)
    ):
        s = stats[uid_key(uid)]
        if action == "login":
            s["logins"] += int(n)
        elif action == "create":
            s["records_created"] += int(n)
            if entity == "activity":
                s["activities_created"] += int(n)
        else:
            s["records_updated"] += int(n)
    for uid, kind, n in await session.execute(
        select(e.user_id, Activity.kind, func.count(e.id))
        .join(Activity, Activity.id == e.entity_id)
        .where(*in_period, e.action == "create", e.entity_type == "activity")
        .group_by(e.user_id, Activity.kind)
    ):
        stats[uid_key(uid)]["activities_by_kind"][kind] = int(n)
    d = Deal
    no_reason = or_(d.won_lost_reason.is_(None), func.trim(d.won_lost_reason) == "")
    for uid, n, blank in await session.execute(
        select(d.owner_id, func.count(d.id), func.sum(_one_if(no_reason)))
        .where(
            d.status == "lost",
            d.deleted_at.is_(None),
            d.owner_id.is_not(None),
            d.closed_at >= f.period.start,
            d.closed_at < f.period.end,
            aud.users_clause(d.owner_id),
            *([d.campaign_id == f.campaign_id] if f.campaign_id is not None else []),
        )
        .group_by(d.owner_id)
    ):
        stats[uid_key(uid)]["deals_lost"] = int(n)
        stats[uid_key(uid)]["lost_without_reason"] = int(blank or 0)
    users_q = select(User)
    if aud.users is not None:
        users_q = users_q.where(User.id.in_(sorted(aud.users)))
    users = {u.id: u for u in await session.scalars(users_q)}
    for uid, u in users.items():
        if u.is_active:
            stats.setdefault(uid, _zero())
    rows = []
    totals = _zero()
    for uid in sorted(stats, key=lambda i: _name(users.get(i), i)):
        s, user = stats[uid], users.get(uid)
        rows.append(
            {
                "user_id": uid,
                "user": _name(user, uid),
                "active": bool(user.is_active) if user else False,
                "last_login_at": audit.jsonable(user.last_login_at) if user else None,
                **s,
            }
        )
        for k in _COUNTS:
            totals[k] += s[k]
        for kind, n in s["activities_by_kind"].items():
            totals["activities_by_kind"][kind] = totals["activities_by_kind"].get(kind, 0) + n
    totals["users"] = len(rows)
    totals["users_without_login"] = sum(1 for r in rows if not r["logins"])
    return Report("adoption", COLUMNS, rows, {"user": None, "last_login_at": None, **totals})


def _zero() -> dict[str, Any]:
    return {**dict.fromkeys(_COUNTS, 0), "activities_by_kind": {}}


def _one_if(cond: Any) -> Any:
    return case((cond, 1), else_=0)


def _name(user: User | None, uid: int) -> str:
    if user is None:
        return f"#{uid}"
    return user.full_name or user.username
