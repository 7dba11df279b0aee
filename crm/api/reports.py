"""REST for reports: ``GET /api/v1/reports/{kind}`` as JSON, or CSV with ``?format=csv``.

docs/reports.md lists the kinds, filters and what each figure means.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import select

from crm import audit
from crm.api.base import db, json_response, principal, settings
from crm.errors import ValidationFailed
from crm.models import Campaign, Pipeline, Team, User
from crm.reports import KINDS, filters_from_query, run
from crm.reports.base import audience
from crm.reports.csvout import to_csv
from crm.reports.service import OUTCOME_LABELS

_TITLES = {
    "agent": {"en": "Agents", "fa": "کارشناسان"},
    "queue": {"en": "Queues", "fa": "صف‌ها"},
    "pipeline": {"en": "Pipeline", "fa": "قیف فروش"},
    "campaign": {"en": "Campaigns", "fa": "کمپین‌ها"},
    "adoption": {"en": "CRM adoption", "fa": "میزان استفاده"},
}


def _labels(request: web.Request) -> dict[str, dict[str, str]]:
    out = dict(OUTCOME_LABELS)
    for d in settings(request).desktop.dispositions:
        out[d.code] = {"en": d.en, "fa": d.fa}
    return out


async def report(request: web.Request) -> web.StreamResponse:
    """A report (agent, queue, pipeline, campaign, adoption): JSON, or ``format=csv``."""
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise web.HTTPNotFound(
            text=f'{{"error": "no report {kind}"}}', content_type="application/json"
        )
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ValidationFailed.one("format", "must be json or csv")
    p = principal(request)
    cfg = settings(request)
    f = filters_from_query(request.query, p, cfg.timezone, cfg.calls.service_level_seconds)
    async with db(request).session() as s:
        rep = await run(s, p, kind, f, db(request).dialect)
        if fmt == "csv":
            audit.record(s, p.user_id, "export", "report", None, {}, kind=kind, **f.describe())
    if fmt == "csv":
        name = f"tamas-{kind}-{f.period.first_day.isoformat()}-{f.period.last_day.isoformat()}.csv"
        return web.Response(
            body=to_csv(rep, f, _labels(request)),
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )
    out = rep.to_json(f)
    out["title"] = _TITLES[kind][f.language]
    out["labels"] = {"dispositions": _labels(request)}
    return json_response(out)


async def report_options(request: web.Request) -> web.Response:
    """What the reports page offers this user: kinds, and the teams, queues, agents,
    campaigns and pipelines they may filter on."""
    p = principal(request)
    cfg = settings(request)
    f = filters_from_query({}, p, cfg.timezone, cfg.calls.service_level_seconds)
    async with db(request).session() as s:
        aud = await audience(s, p, f)
        teams_q = select(Team).order_by(Team.name)
        if p.scope != "all":
            teams_q = teams_q.where(Team.id.in_(sorted(p.team_ids)))
        teams = list(await s.scalars(teams_q))
        users_q = select(User).order_by(User.username)
        if aud.users is not None:
            users_q = users_q.where(User.id.in_(sorted(aud.users)))
        users = list(await s.scalars(users_q))
        queues: set[str] = set(aud.queues or ())
        if aud.queues is None:
            queues |= {t.queue for t in await s.scalars(select(Team)) if t.queue}
        campaigns = list(
            await s.scalars(
                select(Campaign)
                .where(
                    Campaign.deleted_at.is_(None),
                    aud.owner_or_team(Campaign.owner_id, Campaign.team_id),
                )
                .order_by(Campaign.id.desc())
                .limit(200)
            )
        )
        pipelines = list(await s.scalars(select(Pipeline).order_by(Pipeline.id)))
    out: dict[str, Any] = {
        "kinds": [{"kind": k, "title": _TITLES[k]} for k in KINDS],
        "scope": p.scope,
        "timezone": cfg.timezone,
        "today": dt.datetime.now(f.period.tz).date().isoformat(),
        "service_level_seconds": cfg.calls.service_level_seconds,
        "teams": [{"id": t.id, "name": t.name, "queue": t.queue} for t in teams],
        "queues": sorted(queues),
        "agents": [{"id": u.id, "name": u.full_name or u.username} for u in users],
        "campaigns": [{"id": c.id, "name": c.name} for c in campaigns],
        "pipelines": [{"id": x.id, "name": x.name} for x in pipelines],
    }
    return json_response(out)


def report_routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/reports", report_options),
        web.get("/api/v1/reports/{kind}", report),
    ]
