"""Queue report: per queue and per interval (hour, day, week), calls offered, answered,
abandoned and missed, service level and waiting times, from the call log.

Definitions (docs/reports.md): a call is offered to the queue in ``activities.queue`` when
it starts; answered when the call log has an answer time; abandoned when nobody answered
and the call log's outcome is ``abandoned`` (the caller hung up while waiting); missed when
it ended unanswered otherwise. Service level is the share of answered calls that waited at
most ``service_level_seconds`` (the wallboard's definition); average wait is over answered
calls (the speed of answer).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity
from crm.reports.agents import call_time, calls_where
from crm.reports.base import Audience, Column, Filters, Report, pct, ratio
from crm.reports.period import SlotMap, bucket_label, buckets
from crm.reports.sql import slot

COLUMNS = [
    Column("period", "Period", "بازه", "text"),
    Column("queue", "Queue", "صف", "text"),
    Column("offered", "Offered", "ورودی"),
    Column("answered", "Answered", "پاسخ‌داده"),
    Column("abandoned", "Abandoned", "رهاشده"),
    Column("missed", "Missed", "بی‌پاسخ"),
    Column("answered_in_sl", "Answered within SL", "پاسخ در سطح خدمت"),
    Column("service_level_pct", "Service level %", "سطح خدمت ٪", "pct"),
    Column("avg_wait_s", "Avg wait (answered)", "میانگین انتظار (پاسخ‌داده)", "seconds"),
    Column("max_wait_s", "Longest wait", "بیشترین انتظار", "seconds"),
    Column("avg_abandon_wait_s", "Avg wait before abandon", "میانگین انتظار تا رهاکردن", "seconds"),
    Column("avg_talk_s", "Avg talk", "میانگین مکالمه", "seconds"),
]

_SUMS = (
    "offered",
    "answered",
    "abandoned",
    "missed",
    "answered_in_sl",
    "wait_s",
    "waited",
    "abandon_wait_s",
    "abandon_waited",
    "talk_s",
)


def _zero() -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(_SUMS, 0)
    out["max_wait_s"] = None
    return out


def _add(into: dict[str, Any], more: dict[str, Any]) -> None:
    for k in _SUMS:
        into[k] += more[k]
    if more["max_wait_s"] is not None:
        into["max_wait_s"] = max(into["max_wait_s"] or 0, more["max_wait_s"])


def _finish(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "offered": s["offered"],
        "answered": s["answered"],
        "abandoned": s["abandoned"],
        "missed": s["missed"],
        "answered_in_sl": s["answered_in_sl"],
        "service_level_pct": pct(s["answered_in_sl"], s["answered"]),
        "answer_rate_pct": pct(s["answered"], s["offered"]),
        "abandon_rate_pct": pct(s["abandoned"], s["offered"]),
        "avg_wait_s": ratio(s["wait_s"], s["waited"]),
        "max_wait_s": s["max_wait_s"],
        "avg_abandon_wait_s": ratio(s["abandon_wait_s"], s["abandon_waited"]),
        "avg_talk_s": ratio(s["talk_s"], s["answered"]),
    }


async def queue_report(session: AsyncSession, f: Filters, aud: Audience, dialect: str) -> Report:
    a = Activity
    where = [*calls_where(f), a.queue.is_not(None)]
    if aud.queues is not None and aud.own_calls is None:
        where.append(a.queue.in_(sorted(aud.queues)) if aud.queues else a.id.is_(None))
    if aud.own_calls is not None:
        where.append(a.agent_id == aud.own_calls)
    answered = a.answered_at.is_not(None)
    abandoned = and_(a.answered_at.is_(None), a.disposition == "abandoned")
    missed = and_(
        a.answered_at.is_(None),
        a.ended_at.is_not(None),
        func.coalesce(a.disposition, "") != "abandoned",
    )
    in_sl = and_(answered, func.coalesce(a.wait_s, 0) <= f.service_level_seconds)
    bs = buckets(f.period, f.interval, f.week_start)
    slots = SlotMap(bs)
    slot_col = slot(call_time(), dialect)
    per: dict[tuple[str, int], dict[str, Any]] = defaultdict(_zero)
    rows = await session.execute(
        select(
            a.queue,
            slot_col,
            func.count(a.id),
            func.count(a.answered_at),
            func.sum(case((abandoned, 1), else_=0)),
            func.sum(case((missed, 1), else_=0)),
            func.sum(case((in_sl, 1), else_=0)),
            func.sum(case((answered, func.coalesce(a.wait_s, 0)), else_=0)),
            func.sum(case((and_(answered, a.wait_s.is_not(None)), 1), else_=0)),
            func.sum(case((abandoned, func.coalesce(a.wait_s, 0)), else_=0)),
            func.sum(case((and_(abandoned, a.wait_s.is_not(None)), 1), else_=0)),
            func.sum(case((answered, func.coalesce(a.talk_s, 0)), else_=0)),
            func.max(a.wait_s),
        )
        .where(*where)
        .group_by(a.queue, slot_col)
    )
    for row in rows:
        queue, s = row[0], int(row[1])
        idx = slots.index(s)
        if idx is None:  # cannot happen: the WHERE clause bounds the period
            continue
        figures: dict[str, Any] = {k: int(v or 0) for k, v in zip(_SUMS, row[2:12], strict=True)}
        figures["max_wait_s"] = int(row[12]) if row[12] is not None else None
        _add(per[(queue, idx)], figures)
    queues = sorted({q for q, _ in per} | ({f.queue} if f.queue else set()))
    if aud.queues is not None and aud.own_calls is None and f.queue is None:
        queues = sorted(set(queues) | aud.queues)
    out_rows: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    by_queue: dict[str, dict[str, Any]] = {q: _zero() for q in queues}
    overall = _zero()
    for i, b in enumerate(bs):
        label = bucket_label(b, f.interval, f.language)
        in_bucket = _zero()
        for q in queues:
            figures = per.get((q, i), _zero())
            _add(in_bucket, figures)
            _add(by_queue[q], figures)
            if figures["offered"]:
                out_rows.append(
                    {"period": label, "start": b.start.isoformat(), "queue": q, **_finish(figures)}
                )
        _add(overall, in_bucket)
        series.append({"period": label, "start": b.start.isoformat(), **_finish(in_bucket)})
    return Report(
        "queue",
        COLUMNS,
        out_rows,
        {"period": None, "queue": None, **_finish(overall)},
        {
            "series": series,
            "queues": [{"queue": q, **_finish(by_queue[q])} for q in queues],
        },
    )
