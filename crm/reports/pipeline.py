"""Pipeline report: open value by stage, forecast and win rate, from the deals.

* by stage: the open deals now (count, value, and value weighted by the stage's
  probability), whatever the period: the pipeline as it stands;
* forecast: the weighted value of open deals expected to close within the period
  (``expected_close``), plus the weighted value of all open deals;
* won / lost: deals closed within the period; win rate = won / (won + lost) by count.

Amounts are never converted between currencies: figures are per currency.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Deal, Pipeline, Stage
from crm.reports.base import Audience, Column, Filters, Report, pct

COLUMNS = [
    Column("pipeline", "Pipeline", "قیف فروش", "text"),
    Column("stage", "Stage", "مرحله", "text"),
    Column("probability", "Probability %", "احتمال ٪", "pct"),
    Column("currency", "Currency", "ارز", "text"),
    Column("open_count", "Open deals", "معامله‌های باز"),
    Column("open_value", "Open value", "ارزش باز", "money"),
    Column("weighted_value", "Weighted value", "ارزش وزنی", "money"),
]

CENT = Decimal("0.01")


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)


async def pipeline_report(session: AsyncSession, f: Filters, aud: Audience, dialect: str) -> Report:
    d = Deal
    scope = [d.deleted_at.is_(None), aud.owner_or_team(d.owner_id, d.team_id)]
    if f.campaign_id is not None:
        scope.append(d.campaign_id == f.campaign_id)
    if f.pipeline_id is not None:
        scope.append(d.pipeline_id == f.pipeline_id)
    pipes = select(Pipeline).order_by(Pipeline.id)
    if f.pipeline_id is not None:
        pipes = pipes.where(Pipeline.id == f.pipeline_id)
    pipelines = list(await session.scalars(pipes))
    open_rows = await session.execute(
        select(
            d.stage_id,
            d.currency,
            func.count(d.id),
            func.sum(d.amount),
            func.sum(d.amount * Stage.probability),
        )
        .join(Stage, Stage.id == d.stage_id)
        .where(*scope, d.status == "open")
        .group_by(d.stage_id, d.currency)
    )
    by_stage: dict[int, dict[str, tuple[int, Decimal, Decimal]]] = defaultdict(dict)
    currencies: set[str] = set()
    for stage_id, cur, n, total, weighted in open_rows:
        by_stage[stage_id][cur] = (int(n), _money(total), _money(Decimal(str(weighted or 0)) / 100))
        currencies.add(cur)
    default_cur = sorted(currencies)[0] if len(currencies) == 1 else "IRR"
    rows: list[dict[str, Any]] = []
    open_totals: dict[str, dict[str, Any]] = {}
    for pipe in pipelines:
        for st in pipe.stages:
            found = by_stage.get(st.id) or {default_cur: (0, Decimal(0), Decimal(0))}
            for cur, (n, value, weighted) in sorted(found.items()):
                rows.append(
                    {
                        "pipeline_id": pipe.id,
                        "pipeline": pipe.name,
                        "stage_id": st.id,
                        "stage": st.name,
                        "position": st.position,
                        "probability": st.probability,
                        "is_won": st.is_won,
                        "is_lost": st.is_lost,
                        "currency": cur,
                        "open_count": n,
                        "open_value": value,
                        "weighted_value": weighted,
                    }
                )
                t = open_totals.setdefault(
                    cur, {"open_count": 0, "open_value": Decimal(0), "weighted_value": Decimal(0)}
                )
                t["open_count"] += n
                t["open_value"] += value
                t["weighted_value"] += weighted
    forecast: dict[str, Decimal] = {}
    for cur, weighted in await session.execute(
        select(d.currency, func.sum(d.amount * Stage.probability))
        .join(Stage, Stage.id == d.stage_id)
        .where(
            *scope,
            d.status == "open",
            d.expected_close >= f.period.first_day,
            d.expected_close <= f.period.last_day,
        )
        .group_by(d.currency)
    ):
        forecast[cur] = _money(Decimal(str(weighted or 0)) / 100)
    closed: dict[str, dict[str, Any]] = {}
    counts = {"won": 0, "lost": 0}
    for status, cur, n, total in await session.execute(
        select(d.status, d.currency, func.count(d.id), func.sum(d.amount))
        .where(
            *scope,
            d.status.in_(["won", "lost"]),
            d.closed_at >= f.period.start,
            d.closed_at < f.period.end,
        )
        .group_by(d.status, d.currency)
    ):
        c = closed.setdefault(
            cur,
            {"won_count": 0, "won_value": Decimal(0), "lost_count": 0, "lost_value": Decimal(0)},
        )
        c[f"{status}_count"] += int(n)
        c[f"{status}_value"] += _money(total)
        counts[status] += int(n)
    summary = {
        "open": open_totals,
        "forecast": forecast,
        "closed": closed,
        "won_count": counts["won"],
        "lost_count": counts["lost"],
        "win_rate_pct": pct(counts["won"], counts["won"] + counts["lost"]),
    }
    return Report("pipeline", COLUMNS, rows, None, {"summary": summary})
