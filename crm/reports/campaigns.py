"""Campaign results report: the figures of crm/campaigns/results.py (helper of issue 8 that
owns campaigns) for the campaigns in the period, side by side. Nothing is recomputed here:
reached, responded, converted, revenue and ROI mean what ``crm.campaigns.responses`` says.

A campaign is in the period when its schedule (``starts_at`` .. ``ends_at``, either open)
overlaps it, or, unscheduled, when it was created in it. Its figures are its whole
results so far (a campaign's funnel is not split by day).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Campaign
from crm.reports.base import Audience, Column, Filters, Report

COLUMNS = [
    Column("name", "Campaign", "کمپین", "text"),
    Column("channel", "Channel", "کانال", "text"),
    Column("status", "Status", "وضعیت", "text"),
    Column("targeted", "Targeted", "هدف"),
    Column("reached", "Reached", "دسترسی"),
    Column("responded", "Responded", "پاسخ"),
    Column("converted", "Converted", "تبدیل"),
    Column("revenue", "Revenue", "درآمد", "money"),
    Column("cost", "Cost", "هزینه", "money"),
    Column("roi", "ROI", "بازگشت سرمایه", "float"),
    Column("currency", "Currency", "ارز", "text"),
]

MAX_CAMPAIGNS = 200


async def campaign_report(session: AsyncSession, f: Filters, aud: Audience, dialect: str) -> Report:
    from crm.campaigns.results import campaign_results, compare

    c = Campaign
    scheduled = or_(c.starts_at.is_not(None), c.ends_at.is_not(None))
    overlaps = and_(
        or_(c.starts_at.is_(None), c.starts_at < f.period.end),
        or_(c.ends_at.is_(None), c.ends_at >= f.period.start),
    )
    created = and_(c.created_at >= f.period.start, c.created_at < f.period.end)
    stmt = select(c).where(
        c.deleted_at.is_(None),
        or_(and_(scheduled, overlaps), and_(~scheduled, created)),
        aud.owner_or_team(c.owner_id, c.team_id),
    )
    if f.campaign_id is not None:
        stmt = select(c).where(
            c.deleted_at.is_(None),
            c.id == f.campaign_id,
            aud.owner_or_team(c.owner_id, c.team_id),
        )
    campaigns = list(await session.scalars(stmt.order_by(c.id).limit(MAX_CAMPAIGNS)))
    results = [await campaign_results(session, camp) for camp in campaigns]
    compared: dict[str, Any] = compare(results) if results else {"items": [], "best": {}}
    rows = compared["items"]
    return Report("campaign", COLUMNS, rows, None, {"best": compared.get("best", {})})
