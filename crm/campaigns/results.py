"""Campaign results from the raw records: reached, responded, converted, revenue and ROI.

Every figure is a count or sum over the rows that record it (``email_messages``, call
``activities`` with the campaign's id, ``deals`` linked to the campaign), with the meanings
in ``crm.campaigns.responses``. Customers are counted once however many messages or calls
they had. Revenue is the sum of won deals in the campaign's currency; won deals in other
currencies are listed apart, never converted. ROI is ``(revenue - cost) / cost`` and null
while the campaign has no cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, String, case, cast, func, literal, null, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from crm.campaigns.responses import (
    call_condition,
    campaign_calls,
    email_condition,
    won_deals,
)
from crm.models import Activity, Campaign, Deal, EmailMessage, Lead

FUNNEL = ("targeted", "reached", "responded")
EMAIL_FIGURES = ("opened", "clicked", "replied", "bounced", "unsubscribed")


@dataclass
class CampaignResults:
    campaign_id: int
    name: str
    channel: str
    status: str
    currency: str
    targeted: int
    reached: int
    responded: int
    converted: int
    won_deals: int
    revenue: Decimal
    cost: Decimal
    budget: Decimal
    roi: float | None
    reach_rate: float | None
    response_rate: float | None
    conversion_rate: float | None
    leads_converted: int
    revenue_other_currencies: dict[str, str] = field(default_factory=dict)
    email: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("revenue", "cost", "budget"):
            out[key] = str(out[key])
        return out


def _ratio(part: int | Decimal, whole: int | Decimal) -> float | None:
    return None if not whole else round(float(part) / float(whole), 4)


def _customer_keys(campaign_id: int, response: str) -> list[Select[Any]]:
    """SELECTs of ``(type, id, number)`` of the customers who gave ``response``."""
    parts: list[Any] = []
    email = email_condition(response)
    if email is not None:
        parts.append(
            select(
                EmailMessage.entity_type.label("t"),
                EmailMessage.entity_id.label("i"),
                cast(null(), String).label("n"),
            ).where(EmailMessage.campaign_id == campaign_id, email)
        )
    call = call_condition(response)
    if call is not None:
        a = Activity
        unlinked = (a.contact_id.is_(None)) & (a.lead_id.is_(None)) & (a.account_id.is_(None))
        parts.append(
            select(
                case(
                    (a.contact_id.is_not(None), literal("contact")),
                    (a.lead_id.is_not(None), literal("lead")),
                    (a.account_id.is_not(None), literal("account")),
                    else_=literal("number"),
                ).label("t"),
                func.coalesce(a.contact_id, a.lead_id, a.account_id).label("i"),
                case((unlinked, a.external_number), else_=cast(null(), String)).label("n"),
            ).where(campaign_calls(campaign_id), call)
        )
    return parts


async def _count_customers(session: AsyncSession, campaign_id: int, response: str) -> int:
    parts = _customer_keys(campaign_id, response)
    if not parts:
        return 0
    sub = (union(*parts) if len(parts) > 1 else parts[0].distinct()).subquery()
    return int(await session.scalar(select(func.count()).select_from(sub)) or 0)


def _deal_customer() -> ColumnElement[Any]:
    return case(
        (Deal.contact_id.is_not(None), literal("c") + cast(Deal.contact_id, String)),
        (Deal.account_id.is_not(None), literal("a") + cast(Deal.account_id, String)),
        else_=literal("d") + cast(Deal.id, String),
    )


async def campaign_results(session: AsyncSession, campaign: Campaign) -> CampaignResults:
    cid = campaign.id
    funnel = {r: await _count_customers(session, cid, r) for r in FUNNEL}
    won = won_deals(cid)
    converted = int(
        await session.scalar(select(func.count(func.distinct(_deal_customer()))).where(won)) or 0
    )
    won_count = int(await session.scalar(select(func.count(Deal.id)).where(won)) or 0)
    sums = (
        await session.execute(
            select(Deal.currency, func.coalesce(func.sum(Deal.amount), 0))
            .where(won)
            .group_by(Deal.currency)
        )
    ).all()
    by_currency = {cur: Decimal(str(total)) for cur, total in sums}
    revenue = by_currency.pop(campaign.currency, Decimal(0))
    leads_converted = int(
        await session.scalar(
            select(func.count(Lead.id)).where(
                Lead.campaign_id == cid, Lead.converted_at.is_not(None), Lead.deleted_at.is_(None)
            )
        )
        or 0
    )
    email: dict[str, int] = {}
    rows = (
        await session.execute(
            select(EmailMessage.status, func.count())
            .where(EmailMessage.campaign_id == cid)
            .group_by(EmailMessage.status)
        )
    ).all()
    if rows or campaign.channel == "email":
        statuses = dict(rows)
        email = {s: int(statuses.get(s, 0)) for s in ("queued", "sending", "sent", "failed")}
        email["skipped"] = int(statuses.get("skipped", 0))
        email["messages"] = sum(int(n) for n in statuses.values())
        for fig in EMAIL_FIGURES:
            cond = email_condition(fig)
            assert cond is not None
            email[fig] = int(
                await session.scalar(
                    select(func.count(EmailMessage.id)).where(EmailMessage.campaign_id == cid, cond)
                )
                or 0
            )
    calls: dict[str, int] = {}
    call_row = (
        await session.execute(
            select(
                func.count(Activity.id),
                func.count(Activity.answered_at),
            ).where(campaign_calls(cid))
        )
    ).one()
    if call_row[0] or campaign.channel == "call":
        calls = {"attempts": int(call_row[0]), "answered": int(call_row[1])}
    cost = Decimal(campaign.cost or 0)
    roi = None if not cost else round(float((revenue - cost) / cost), 4)
    return CampaignResults(
        campaign_id=cid,
        name=campaign.name,
        channel=campaign.channel,
        status=campaign.status,
        currency=campaign.currency,
        targeted=funnel["targeted"],
        reached=funnel["reached"],
        responded=funnel["responded"],
        converted=converted,
        won_deals=won_count,
        revenue=revenue,
        cost=cost,
        budget=Decimal(campaign.budget or 0),
        roi=roi,
        reach_rate=_ratio(funnel["reached"], funnel["targeted"]),
        response_rate=_ratio(funnel["responded"], funnel["reached"]),
        conversion_rate=_ratio(converted, funnel["reached"]),
        leads_converted=leads_converted,
        revenue_other_currencies={k: str(v) for k, v in sorted(by_currency.items())},
        email=email,
        calls=calls,
    )


COMPARED = (
    "reached",
    "responded",
    "converted",
    "revenue",
    "roi",
    "response_rate",
    "conversion_rate",
)


def compare(results: list[CampaignResults]) -> dict[str, Any]:
    """Side by side, with the best campaign per figure: the one strictly ahead of every
    other (a tie has no best, nulls never win). Revenue and ROI are compared only between
    campaigns in the same currency as the first."""
    best: dict[str, int | None] = {}
    for key in COMPARED:
        candidates = [
            r
            for r in results
            if getattr(r, key) is not None
            and (key not in ("revenue", "roi") or r.currency == results[0].currency)
        ]
        ranked = sorted(candidates, key=lambda r: getattr(r, key), reverse=True)
        ahead = len(ranked) == 1 or (
            len(ranked) > 1 and getattr(ranked[0], key) > getattr(ranked[1], key)
        )
        best[key] = ranked[0].campaign_id if ranked and ahead else None
    return {"items": [r.as_json() for r in results], "best": best}
