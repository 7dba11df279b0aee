"""Agent report: per agent, calls handled, talk, wait and wrap-up time, dispositions and
conversions, over the call log (``activities`` of kind ``call``) and the deals.

Definitions (docs/reports.md):

* a call belongs to the agent in ``activities.agent_id`` (who answered it; for a call nobody
  answered, the last agent it rang) and to the period by when it started;
* handled: answered calls; ``talk_s`` and ``wait_s`` are what the call log holds (wait is
  summed over handled calls);
* wrap-up: from the end of a handled call to the agent's first save of that call's
  wrap-up (the first update of the call activity by that agent, from the audit log),
  counted only when within an hour of the end (a later edit is not wrap-up work);
* conversions: deals the agent owns that were won in the period; ``leads_converted``
  counts the agent's leads converted in the period.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, AuditEntry, Deal, Lead, User
from crm.reports.base import Audience, Column, Filters, Report, ratio, uid_key
from crm.reports.sql import epoch

WRAPUP_MAX_SECONDS = 3600

COLUMNS = [
    Column("agent", "Agent", "کارشناس", "text"),
    Column("calls", "Calls", "تماس‌ها"),
    Column("handled", "Handled", "پاسخ‌داده"),
    Column("inbound", "Inbound handled", "ورودی پاسخ‌داده"),
    Column("outbound", "Outbound calls", "تماس‌های خروجی"),
    Column("talk_s", "Talk time", "زمان مکالمه", "seconds"),
    Column("avg_talk_s", "Avg talk", "میانگین مکالمه", "seconds"),
    Column("wait_s", "Wait time", "زمان انتظار", "seconds"),
    Column("avg_wait_s", "Avg wait", "میانگین انتظار", "seconds"),
    Column("wrapup_s", "Wrap-up time", "زمان جمع‌بندی", "seconds"),
    Column("avg_wrapup_s", "Avg wrap-up", "میانگین جمع‌بندی", "seconds"),
    Column("conversions", "Conversions (deals won)", "تبدیل (معامله‌های موفق)"),
    Column("won_value", "Won value", "ارزش معامله‌های موفق", "money"),
    Column("leads_converted", "Leads converted", "سرنخ‌های تبدیل‌شده"),
]


def call_time() -> ColumnElement[Any]:
    return func.coalesce(Activity.started_at, Activity.occurred_at)


def calls_where(f: Filters) -> list[ColumnElement[bool]]:
    """The calls of the period and filters that this audience may count."""
    t = call_time()
    conds = [
        Activity.kind == "call",
        Activity.deleted_at.is_(None),
        t >= f.period.start,
        t < f.period.end,
    ]
    if f.queue is not None:
        conds.append(Activity.queue == f.queue)
    if f.campaign_id is not None:
        conds.append(Activity.campaign_id == f.campaign_id)
    return conds


async def agent_report(session: AsyncSession, f: Filters, aud: Audience, dialect: str) -> Report:
    a = Activity
    where = [*calls_where(f), a.agent_id.is_not(None), aud.users_clause(a.agent_id)]
    answered = a.answered_at.is_not(None)
    stats: dict[int, dict[str, Any]] = defaultdict(_empty)
    rows = await session.execute(
        select(
            a.agent_id,
            func.count(a.id),
            func.count(a.answered_at),
            func.sum(case((and_(answered, a.direction == "inbound"), 1), else_=0)),
            func.sum(case((a.direction == "outbound", 1), else_=0)),
            func.sum(case((answered, func.coalesce(a.talk_s, 0)), else_=0)),
            func.sum(case((answered, func.coalesce(a.wait_s, 0)), else_=0)),
            func.sum(case((and_(answered, a.wait_s.is_not(None)), 1), else_=0)),
        )
        .where(*where)
        .group_by(a.agent_id)
    )
    for uid, calls, handled, inbound, outbound, talk, wait, waited in rows:
        s = stats[uid_key(uid)]
        s.update(
            calls=int(calls),
            handled=int(handled),
            inbound=int(inbound or 0),
            outbound=int(outbound or 0),
            talk_s=int(talk or 0),
            wait_s=int(wait or 0),
            _waited=int(waited or 0),
        )
    for uid, code, n in await session.execute(
        select(a.agent_id, a.disposition, func.count(a.id))
        .where(*where, a.disposition.is_not(None))
        .group_by(a.agent_id, a.disposition)
    ):
        stats[uid_key(uid)]["dispositions"][code] = int(n)
    await _wrapups(session, stats, where, dialect)
    await _conversions(session, stats, f, aud)
    users = {u.id: u for u in await session.scalars(select(User))}
    if aud.users is not None:
        for uid in aud.users:
            if uid in users and users[uid].is_active:
                stats.setdefault(uid, _empty())  # a zero row for each active member
    out_rows = []
    for uid in sorted(stats, key=lambda i: _name(users.get(i), i)):
        s = stats[uid]
        out_rows.append({"agent_id": uid, "agent": _name(users.get(uid), uid), **_finish(s)})
    totals = _empty()
    for s in stats.values():
        for k in ("calls", "handled", "inbound", "outbound", "talk_s", "wait_s", "_waited"):
            totals[k] += s[k]
        for k in ("wrapup_s", "_wrapped", "conversions", "leads_converted"):
            totals[k] += s[k]
        for code, n in s["dispositions"].items():
            totals["dispositions"][code] = totals["dispositions"].get(code, 0) + n
        for cur, v in s["won_by_currency"].items():
            totals["won_by_currency"][cur] = totals["won_by_currency"].get(cur, Decimal(0)) + v
    codes = sorted({c for s in stats.values() for c in s["dispositions"]})
    return Report(
        "agent",
        COLUMNS,
        out_rows,
        {"agent": None, **_finish(totals)},
        {"disposition_codes": codes},
    )


def _empty() -> dict[str, Any]:
    return {
        "calls": 0,
        "handled": 0,
        "inbound": 0,
        "outbound": 0,
        "talk_s": 0,
        "wait_s": 0,
        "_waited": 0,
        "wrapup_s": 0,
        "_wrapped": 0,
        "dispositions": {},
        "conversions": 0,
        "won_by_currency": {},
        "leads_converted": 0,
    }


def _finish(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in s.items() if not k.startswith("_")}
    out["avg_talk_s"] = ratio(s["talk_s"], s["handled"])
    out["avg_wait_s"] = ratio(s["wait_s"], s["_waited"])
    out["avg_wrapup_s"] = ratio(s["wrapup_s"], s["_wrapped"])
    out["wrapped_calls"] = s["_wrapped"]
    won = s["won_by_currency"]
    out["won_value"] = sum(won.values(), Decimal(0)) if len(won) <= 1 else None
    out["won_by_currency"] = dict(won)
    return out


def _name(user: User | None, uid: int) -> str:
    if user is None:
        return f"#{uid}"
    return user.full_name or user.username


async def _wrapups(
    session: AsyncSession,
    stats: dict[int, dict[str, Any]],
    where: list[ColumnElement[bool]],
    dialect: str,
) -> None:
    a, e = Activity, AuditEntry
    first = (
        select(a.id.label("call_id"), func.min(e.at).label("saved"))
        .join(
            e,
            and_(
                e.entity_type == "activity",
                e.entity_id == a.id,
                e.action == "update",
                e.user_id == a.agent_id,
                e.at >= a.answered_at,
            ),
        )
        .where(*where, a.answered_at.is_not(None), a.ended_at.is_not(None))
        .group_by(a.id)
        .subquery()
    )
    gap = epoch(first.c.saved, dialect) - epoch(a.ended_at, dialect)
    wrap = case((gap < 0, 0), else_=gap)
    rows = await session.execute(
        select(a.agent_id, func.count(a.id), func.sum(wrap))
        .join(first, first.c.call_id == a.id)
        .where(gap <= WRAPUP_MAX_SECONDS)
        .group_by(a.agent_id)
    )
    for uid, n, total in rows:
        stats[uid_key(uid)]["_wrapped"] = int(n)
        stats[uid_key(uid)]["wrapup_s"] = int(total or 0)


async def _conversions(
    session: AsyncSession, stats: dict[int, dict[str, Any]], f: Filters, aud: Audience
) -> None:
    d = Deal
    conds = [
        d.status == "won",
        d.deleted_at.is_(None),
        d.owner_id.is_not(None),
        d.closed_at >= f.period.start,
        d.closed_at < f.period.end,
        aud.users_clause(d.owner_id),
    ]
    if f.campaign_id is not None:
        conds.append(d.campaign_id == f.campaign_id)
    for uid, cur, n, total in await session.execute(
        select(d.owner_id, d.currency, func.count(d.id), func.sum(d.amount))
        .where(*conds)
        .group_by(d.owner_id, d.currency)
    ):
        s = stats[uid_key(uid)]
        s["conversions"] += int(n)
        s["won_by_currency"][cur] = Decimal(str(total or 0))
    lead_conds = [
        Lead.converted_at >= f.period.start,
        Lead.converted_at < f.period.end,
        Lead.owner_id.is_not(None),
        aud.users_clause(Lead.owner_id),
    ]
    if f.campaign_id is not None:
        lead_conds.append(Lead.campaign_id == f.campaign_id)
    for uid, n in await session.execute(
        select(Lead.owner_id, func.count(Lead.id)).where(*lead_conds).group_by(Lead.owner_id)
    ):
        stats[uid_key(uid)]["leads_converted"] = int(n)
