"""Which reports exist, how a request's query string becomes filters, and running one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from crm.errors import ValidationFailed
from crm.permissions import Principal
from crm.reports.adoption import adoption_report
from crm.reports.agents import agent_report
from crm.reports.base import Audience, Filters, Report, audience
from crm.reports.campaigns import campaign_report
from crm.reports.period import INTERVALS, WEEKDAYS, period
from crm.reports.pipeline import pipeline_report
from crm.reports.queues import queue_report

Runner = Callable[[AsyncSession, Filters, Audience, str], Awaitable[Report]]

KINDS: dict[str, Runner] = {
    "agent": agent_report,
    "queue": queue_report,
    "pipeline": pipeline_report,
    "campaign": campaign_report,
    "adoption": adoption_report,
}

# The call log's own outcomes, shown until an agent chooses a disposition.
OUTCOME_LABELS = {
    "answered": {"en": "Answered (no code)", "fa": "پاسخ‌داده (بدون کد)"},
    "missed": {"en": "Missed", "fa": "بی‌پاسخ"},
    "abandoned": {"en": "Abandoned", "fa": "رهاشده"},
}


def _int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed.one(name, "must be an integer") from None


def filters_from_query(
    params: Mapping[str, str],
    p: Principal,
    timezone: str,
    service_level_seconds: float,
    today: dt.date | None = None,
) -> Filters:
    """Filters from ``from``, ``to``, ``calendar``, ``team_id``, ``queue``, ``campaign_id``,
    ``agent_id``, ``pipeline_id``, ``interval``, ``week_start``, ``sl_seconds``, ``lang``."""
    tz = ZoneInfo(timezone)
    per = period(
        params.get("from") or None,
        params.get("to") or None,
        tz,
        params.get("calendar") or None,
        today,
    )
    interval = params.get("interval") or "day"
    if interval not in INTERVALS:
        raise ValidationFailed.one("interval", f"must be one of {', '.join(INTERVALS)}")
    week_start = (params.get("week_start") or "saturday").lower()
    if week_start not in WEEKDAYS:
        raise ValidationFailed.one("week_start", "must be a weekday name (saturday, monday...)")
    sl = service_level_seconds
    if params.get("sl_seconds"):
        try:
            sl = float(params["sl_seconds"])
        except ValueError:
            raise ValidationFailed.one("sl_seconds", "must be a number") from None
        if not 0 < sl <= 3600:
            raise ValidationFailed.one("sl_seconds", "must be between 0 and 3600")
    lang = params.get("lang") or (p.language if p.language in ("fa", "en") else "fa")
    if lang not in ("fa", "en"):
        raise ValidationFailed.one("lang", "must be fa or en")
    queue = (params.get("queue") or "").strip() or None
    return Filters(
        period=per,
        team_id=_int(params, "team_id"),
        queue=queue,
        campaign_id=_int(params, "campaign_id"),
        agent_id=_int(params, "agent_id"),
        pipeline_id=_int(params, "pipeline_id"),
        interval=interval,
        week_start=WEEKDAYS[week_start],
        service_level_seconds=sl,
        language=lang,
    )


async def run(session: AsyncSession, p: Principal, kind: str, f: Filters, dialect: str) -> Report:
    """Run report ``kind`` for ``p`` (their audience: own, team or all)."""
    runner = KINDS.get(kind)
    if runner is None:
        raise ValidationFailed.one("kind", f"must be one of {', '.join(KINDS)}")
    aud = await audience(session, p, f)
    return await runner(session, f, aud, dialect)
