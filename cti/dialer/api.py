"""REST endpoints of the outbound dialer (``/api/v1/dialer/...``, see docs/dialer.md)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from aiohttp import web
from pydantic import Field
from sqlalchemy import select

from crm.api.base import body, db, int_param, json_response, match_id, principal
from crm.models import DialerCampaign, DialerEntry, utcnow
from crm.schemas import Strict
from cti.dialer import manage
from cti.dialer.config import DialerCampaignIn, DialerSettingsIn
from cti.dialer.service import DialerService
from tamas.cluster.forward import at_link_holder

DIALER = web.AppKey("dialer", DialerService)

DialerSettingsPatch = DialerSettingsIn  # every field has a default: PATCH sends only some


class SkipIn(Strict):
    reason: str | None = Field(default=None, max_length=200)


class DispositionIn(Strict):
    code: str = Field(min_length=1, max_length=32)
    note: str | None = Field(default=None, max_length=4000)
    callback_at: dt.datetime | None = None
    callback_for: Literal["me", "anyone"] = "me"


def _service(request: web.Request) -> DialerService:
    return request.app[DIALER]


async def list_campaigns(request: web.Request) -> web.Response:
    """Call campaigns with their dialer settings and progress."""
    async with db(request).session() as s:
        items = await manage.list_campaigns(s, principal(request))
    return json_response({"items": items})


async def create_campaign(request: web.Request) -> web.Response:
    """Give a call campaign a dialer (or create the campaign with it)."""
    data = await body(request, DialerCampaignIn)
    p = principal(request)
    async with db(request).session() as s:
        campaign = await manage.create(s, p, data)
        campaign_id = campaign.id
    return json_response(await _view(request, campaign_id), status=201)


async def _view(request: web.Request, campaign_id: int) -> dict[str, object]:
    async with db(request).session() as s:
        campaign, dialer = await manage.get_campaign(s, principal(request), campaign_id)
        out = manage.present(campaign, dialer)
        out["progress"] = await manage.progress(s, campaign_id, dialer, utcnow())
    return out


async def get_campaign(request: web.Request) -> web.Response:
    """A call campaign's dialer settings and progress."""
    return json_response(await _view(request, match_id(request)))


async def patch_campaign(request: web.Request) -> web.Response:
    """Change a call campaign's dialer settings."""
    data = await body(request, DialerSettingsPatch)
    campaign_id = match_id(request)
    async with db(request).session() as s:
        await manage.update(s, principal(request), campaign_id, data)
    _service(request).wake()
    return json_response(await _view(request, campaign_id))


async def build_list(request: web.Request) -> web.Response:
    """Add the campaign's new audience members to its call list."""
    campaign_id = match_id(request)
    async with db(request).session() as s:
        report = await manage.build_list(s, principal(request), campaign_id)
    _service(request).wake()
    return json_response(report)


async def transition(request: web.Request) -> web.Response:
    """Start, pause or stop dialling a call campaign."""
    campaign_id = match_id(request)
    action = request.match_info["action"]
    async with db(request).session() as s:
        out = await manage.transition(s, principal(request), campaign_id, action)
    service = _service(request)
    for agent, entry_id in out.pop("released", []):
        service.push(agent, {"type": "dialer.released", "entry_id": entry_id})
    service.wake()
    return json_response(out)


async def list_entries(request: web.Request) -> web.Response:
    """One page of a call campaign's list."""
    limit = int_param(request, "limit", 100, 1, 1000)
    async with db(request).session() as s:
        out = await manage.entries(
            s, principal(request), match_id(request), dict(request.query), limit
        )
    return json_response(out)


async def _campaign_pbx(request: web.Request) -> str | None:
    """The PBX an entry is dialled on: its campaign's (None: the default PBX)."""
    try:
        entry_id = int(request.match_info["id"])
    except ValueError:
        return None
    async with db(request).session() as s:
        pbx: str | None = await s.scalar(
            select(DialerCampaign.pbx)
            .join(DialerEntry, DialerEntry.campaign_id == DialerCampaign.campaign_id)
            .where(DialerEntry.id == entry_id)
        )
    return pbx


@at_link_holder(_campaign_pbx)
async def dial(request: web.Request) -> web.Response:
    """Preview: dial the customer offered to me (on the instance holding the PBX link)."""
    out = await _service(request).dial_offered(principal(request), match_id(request))
    return json_response(out, status=202 if out.get("dialled") else 200)


async def skip(request: web.Request) -> web.Response:
    """Preview: skip the customer offered to me (tried again later)."""
    data = await body(request, SkipIn)
    out = await _service(request).skip(principal(request), match_id(request), data.reason)
    return json_response(out)


async def disposition(request: web.Request) -> web.Response:
    """The outcome of an answered campaign call (closes, retries, calls back)."""
    data = await body(request, DispositionIn)
    callback_at = data.callback_at
    if callback_at is not None and callback_at.tzinfo is None:
        callback_at = callback_at.replace(tzinfo=dt.UTC)
    out = await _service(request).dispose(
        principal(request),
        match_id(request),
        data.code,
        data.note,
        callback_at,
        data.callback_for,
    )
    return json_response(out)


async def mine(request: web.Request) -> web.Response:
    """My campaign cards: offered, being called, waiting for an outcome."""
    return json_response({"items": await _service(request).mine(principal(request))})


def dialer_routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/dialer/campaigns", list_campaigns),
        web.post("/api/v1/dialer/campaigns", create_campaign),
        web.get("/api/v1/dialer/campaigns/{id}", get_campaign),
        web.patch("/api/v1/dialer/campaigns/{id}", patch_campaign),
        web.post("/api/v1/dialer/campaigns/{id}/build", build_list),
        web.post("/api/v1/dialer/campaigns/{id}/{action:start|pause|stop}", transition),
        web.get("/api/v1/dialer/campaigns/{id}/entries", list_entries),
        web.post("/api/v1/dialer/entries/{id}/dial", dial),
        web.post("/api/v1/dialer/entries/{id}/skip", skip),
        web.post("/api/v1/dialer/entries/{id}/disposition", disposition),
        web.get("/api/v1/dialer/me", mine),
    ]
