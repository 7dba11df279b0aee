"""REST for segments, campaigns and e-mail campaigns, and the public e-mail links.

Under ``/api/v1`` (authenticated; registered before the generic record routes so that
``/segments/schema`` and ``/campaigns/compare`` are not taken for record ids, and so that
creating or editing a segment validates its filter):

* segments: ``schema``, ``preview`` (live count of an unsaved filter), create/edit with
  validation, ``{id}/count``, ``{id}/preview``, ``{id}/members``, ``{id}/freeze``
* campaigns: ``compare?ids=``, ``{id}/results``, ``{id}/audience``, ``{id}/email`` (setup),
  ``{id}/send``, ``{id}/messages``, ``{id}/preview-email``
* ``email-templates`` CRUD and ``{id}/preview``; ``email/inbound``; ``email/suppressions``

Public (no login; every id in them is signed): ``/email/o/{token}.gif`` (open pixel),
``/email/c/{token}`` (click redirect), ``/email/u/{token}`` (unsubscribe page, and one-click
POST), ``/email/inbound`` (bounces and replies from the MTA, with the shared secret).
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from aiohttp import web
from pydantic import EmailStr, Field
from sqlalchemy import func, select

from crm import audit
from crm.api.base import body, db, int_param, json_response, match_id, principal, settings
from crm.campaigns import segments
from crm.campaigns.email import inbound, template, tracking
from crm.campaigns.email.maildir import run_poller
from crm.campaigns.email.sender import CampaignMailer, MailConfig, render_for
from crm.campaigns.email.tokens import BadToken, Signer, parse_click, parse_open, parse_unsubscribe
from crm.campaigns.email.transport import SmtpTransport
from crm.campaigns.filters import ENTITY_MODELS, describe
from crm.campaigns.results import campaign_results, compare
from crm.db import Database
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import (
    Campaign,
    EmailCampaign,
    EmailMessage,
    EmailSuppression,
    EmailTemplate,
    Segment,
    utcnow,
)
from crm.permissions import mask_value
from crm.schemas import Strict
from crm.services import records
from crm.services.entities import SPECS
from tamas.config import Settings
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.api.campaigns")

MAILER = web.AppKey("campaign_mailer", CampaignMailer)
MAX_INBOUND_BYTES = 10 * 1024 * 1024
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store, private", "X-Content-Type-Options": "nosniff"}

EntityType = Literal["contact", "lead", "account"]


# -- schemas ---------------------------------------------------------------------------------


class SegmentCreate(Strict):
    name: str = Field(min_length=1, max_length=128)
    entity_type: EntityType = "contact"
    kind: Literal["static", "dynamic"] = "dynamic"
    filter: dict[str, Any] = Field(default_factory=dict)
    member_ids: list[int] | None = Field(default=None, max_length=100_000)


class SegmentPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    kind: Literal["static", "dynamic"] | None = None
    filter: dict[str, Any] | None = None


class FilterPreview(Strict):
    entity_type: EntityType = "contact"
    filter: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=20, ge=0, le=200)


class MembersEdit(Strict):
    add: list[int] = Field(default_factory=list, max_length=100_000)
    remove: list[int] = Field(default_factory=list, max_length=100_000)


class TemplateIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    default_language: Literal["fa", "en"] = "fa"
    subject_fa: str = Field(default="", max_length=300)
    subject_en: str = Field(default="", max_length=300)
    html_fa: str = Field(default="", max_length=500_000)
    html_en: str = Field(default="", max_length=500_000)
    text_fa: str | None = Field(default=None, max_length=200_000)
    text_en: str | None = Field(default=None, max_length=200_000)


class TemplatePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    default_language: Literal["fa", "en"] | None = None
    subject_fa: str | None = Field(default=None, max_length=300)
    subject_en: str | None = Field(default=None, max_length=300)
    html_fa: str | None = Field(default=None, max_length=500_000)
    html_en: str | None = Field(default=None, max_length=500_000)
    text_fa: str | None = Field(default=None, max_length=200_000)
    text_en: str | None = Field(default=None, max_length=200_000)


class EmailSetupIn(Strict):
    template_id: int
    from_address: EmailStr | None = None
    from_name: str | None = Field(default=None, max_length=200)
    reply_to: EmailStr | None = None
    rate_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    track_opens: bool = True
    track_clicks: bool = True


class PreviewIn(Strict):
    entity_type: EntityType = "contact"
    entity_id: int
    language: Literal["fa", "en"] | None = None


# -- helpers ---------------------------------------------------------------------------------


def mailer(request: web.Request) -> CampaignMailer:
    return request.app[MAILER]


def _segment_json(seg: Segment, count: int | None = None) -> dict[str, Any]:
    out = audit.jsonable(records.row_dict(seg))
    if count is not None:
        out["count"] = count
    return out


async def _segment(s: Any, request: web.Request) -> Segment:
    seg: Segment = await records.get(s, principal(request), SPECS["segment"], match_id(request))
    return seg


async def _campaign(s: Any, request: web.Request) -> Campaign:
    camp: Campaign = await records.get(s, principal(request), SPECS["campaign"], match_id(request))
    return camp


def _template_json(t: EmailTemplate) -> dict[str, Any]:
    return audit.jsonable(records.row_dict(t))


def _check_template(parts: dict[str, Any]) -> None:
    errors = template.check(
        {k: v for k, v in parts.items() if k.startswith(("subject", "html", "text"))}
    )
    if errors:
        raise ValidationFailed(errors)


# -- segments --------------------------------------------------------------------------------


async def segment_schema(request: web.Request) -> web.Response:
    """Fields, operators and criteria a segment filter may use (for the editor)."""
    p = principal(request)
    p.require("segment", "view")
    entity_type = request.query.get("entity_type", "contact")
    if entity_type not in ENTITY_MODELS:
        raise ValidationFailed.one("entity_type", "must be contact, lead or account")
    out = describe(entity_type)
    masked = p.masked(entity_type)
    out["fields"] = [f for f in out["fields"] if f["name"] not in masked]
    from crm.services import extras

    async with db(request).session() as s:
        defs = await extras.field_defs(s, entity_type)
    out["custom_fields"] = [
        {
            "key": d.key,
            "type": d.field_type,
            "choices": d.choices,
            "label_fa": d.label_fa,
            "label_en": d.label_en,
        }
        for d in defs.values()
        if not (d.sensitive and "sensitive_custom" in masked)
    ]
    return json_response(out)


async def _preview(
    s: Any, request: web.Request, stmt: Any, entity_type: str, limit: int
) -> dict[str, Any]:
    p = principal(request)
    count = await segments.count_select(s, stmt)
    items: list[dict[str, Any]] = []
    if limit:
        spec = SPECS[entity_type]
        model = spec.model
        ids = list(await s.scalars(stmt.order_by(model.id).limit(limit)))
        objs = list(await s.scalars(select(model).where(model.id.in_(ids)).order_by(model.id)))
        if p.can(entity_type, "view"):
            items = await records.present_many(s, p, spec, objs)
    return {"count": count, "items": items}


async def preview_filter(request: web.Request) -> web.Response:
    """Live count and first records of an unsaved filter, in your scope."""
    p = principal(request)
    p.require("segment", "view")
    data = await body(request, FilterPreview)
    async with db(request).session() as s:
        stmt = await segments.filter_select(s, data.entity_type, data.filter, p)
        out = await _preview(s, request, stmt, data.entity_type, data.limit)
    return json_response(out)


async def create_segment(request: web.Request) -> web.Response:
    """Create a segment; the filter is validated and a static one is frozen."""
    data = await body(request, SegmentCreate)
    async with db(request).session() as s:
        seg = await segments.create_segment(
            s,
            principal(request),
            name=data.name,
            entity_type=data.entity_type,
            kind=data.kind,
            filt=data.filter,
            member_ids=data.member_ids,
        )
        count = await segments.count_members(s, seg, principal(request))
        out = _segment_json(seg, count)
    return json_response(out, status=201)


async def patch_segment(request: web.Request) -> web.Response:
    """Change a segment's name, kind or filter (validated)."""
    data = await body(request, SegmentPatch)
    async with db(request).session() as s:
        seg = await _segment(s, request)
        await segments.update_segment(
            s, principal(request), seg, data.model_dump(exclude_unset=True, exclude_none=True)
        )
        out = _segment_json(seg, await segments.count_members(s, seg, principal(request)))
    return json_response(out)


async def delete_segment(request: web.Request) -> web.Response:
    """Delete a segment no campaign targets (its campaigns would lose their audience)."""
    async with db(request).session() as s:
        seg = await _segment(s, request)
        used = await s.scalar(select(func.count()).where(Campaign.segment_id == seg.id))
        if used:
            raise Conflict(f"the segment is the audience of {used} campaign(s)")
        await records.delete(s, principal(request), SPECS["segment"], seg.id)
    return web.Response(status=204)


async def segment_count(request: web.Request) -> web.Response:
    """Live member count of a segment, in your scope."""
    async with db(request).session() as s:
        seg = await _segment(s, request)
        count = await segments.count_members(s, seg, principal(request))
    return json_response(
        {"segment_id": seg.id, "entity_type": seg.entity_type, "kind": seg.kind, "count": count}
    )


async def segment_preview(request: web.Request) -> web.Response:
    """Member count and the first members of a segment."""
    limit = int_param(request, "limit", 20, lo=0, hi=200)
    async with db(request).session() as s:
        seg = await _segment(s, request)
        stmt = await segments.members_select(s, seg, principal(request))
        out = await _preview(s, request, stmt, seg.entity_type, limit)
    return json_response({"segment_id": seg.id, **out})


async def segment_members(request: web.Request) -> web.Response:
    """Add and remove members of a static segment."""
    data = await body(request, MembersEdit)
    async with db(request).session() as s:
        seg = await _segment(s, request)
        await segments.edit_members(s, principal(request), seg, data.add, data.remove)
        count = await segments.count_members(s, seg, principal(request))
    return json_response({"segment_id": seg.id, "count": count})


async def segment_freeze(request: web.Request) -> web.Response:
    """Make a static segment's members what its filter selects now."""
    async with db(request).session() as s:
        seg = await _segment(s, request)
        await segments.freeze(s, principal(request), seg)
        count = await segments.count_members(s, seg, principal(request))
    return json_response({"segment_id": seg.id, "count": count})


# -- campaigns -------------------------------------------------------------------------------


async def campaign_results_view(request: web.Request) -> web.Response:
    """Reached, responded, converted, revenue and ROI of a campaign."""
    async with db(request).session() as s:
        camp = await _campaign(s, request)
        out = (await campaign_results(s, camp)).as_json()
    return json_response(out)


async def compare_campaigns(request: web.Request) -> web.Response:
    """Campaign results side by side (``ids=1,2,3``) with the best per figure."""
    p = principal(request)
    p.require("campaign", "view")
    raw = [x for x in request.query.get("ids", "").split(",") if x.strip()]
    try:
        ids = list(dict.fromkeys(int(x) for x in raw))
    except ValueError:
        raise ValidationFailed.one("ids", "must be campaign ids separated by commas") from None
    if not 1 <= len(ids) <= 20:
        raise ValidationFailed.one("ids", "give between 1 and 20 campaign ids")
    async with db(request).session() as s:
        results = []
        for cid in ids:
            camp = await records.get(s, p, SPECS["campaign"], cid)
            results.append(await campaign_results(s, camp))
    return json_response(compare(results))


async def campaign_audience(request: web.Request) -> web.Response:
    """How many records the campaign targets now."""
    async with db(request).session() as s:
        camp = await _campaign(s, request)
        entity_type, ids = await segments.campaign_audience(s, camp, principal(request))
    return json_response({"campaign_id": camp.id, "entity_type": entity_type, "count": len(ids)})


async def _email_json(s: Any, camp: Campaign, setup: EmailCampaign | None) -> dict[str, Any]:
    counts = dict(
        (
            await s.execute(
                select(EmailMessage.status, func.count())
                .where(EmailMessage.campaign_id == camp.id)
                .group_by(EmailMessage.status)
            )
        ).all()
    )
    return {
        "campaign_id": camp.id,
        "status": camp.status,
        "setup": audit.jsonable(records.row_dict(setup)) if setup else None,
        "messages": {k: int(v) for k, v in counts.items()},
    }


async def get_email_setup(request: web.Request) -> web.Response:
    """The e-mail setup of a campaign and its messages by status."""
    async with db(request).session() as s:
        camp = await _campaign(s, request)
        out = await _email_json(s, camp, await s.get(EmailCampaign, camp.id))
    return json_response(out)


async def put_email_setup(request: web.Request) -> web.Response:
    """Set the template, sender and pace of an e-mail campaign."""
    p = principal(request)
    p.require("campaign", "edit")
    data = await body(request, EmailSetupIn)
    async with db(request).session() as s:
        camp = await _campaign(s, request)
        if camp.channel != "email":
            raise ValidationFailed.one("channel", "the campaign's channel is not email")
        if await s.get(EmailTemplate, data.template_id) is None:
            raise ValidationFailed.one("template_id", f"no e-mail template {data.template_id}")
        setup = await s.get(EmailCampaign, camp.id)
        values = data.model_dump()
        if values["rate_per_minute"] is None:
            values["rate_per_minute"] = settings(request).email.rate_per_minute
        before = records.row_dict(setup) if setup else {}
        if setup is None:
            setup = EmailCampaign(campaign_id=camp.id, **values)
            s.add(setup)
        else:
            for k, v in values.items():
                setattr(setup, k, v)
        await s.flush()
        after = records.row_dict(setup)
        for key in ("created_at", "updated_at"):
            before.pop(key, None)
            after.pop(key, None)
        audit.record(s, p.user_id, "email_setup", "campaign", camp.id, audit.diff(before, after))
        out = await _email_json(s, camp, setup)
    return json_response(out)


async def send_campaign(request: web.Request) -> web.Response:
    """Plan the recipients and start sending (202); sending goes on in the background."""
    p = principal(request)
    p.require("campaign", "edit")
    if not settings(request).email.enabled:
        raise ValidationFailed.one("email", "e-mail sending is switched off (TAMAS_EMAIL__ENABLED)")
    async with db(request).session() as s:
        camp = await _campaign(s, request)
        if camp.status == "done":
            raise Conflict("the campaign is done; create a new one to mail again")
    report = await mailer(request).launch(camp.id, p)
    return json_response(report.as_json(), status=202)


async def campaign_messages(request: web.Request) -> web.Response:
    """The campaign's messages (``status=``, ``after_id=``, ``limit=``)."""
    limit = int_param(request, "limit", 100, hi=500)
    after = int_param(request, "after_id", 0, lo=0, hi=2**62)
    status = request.query.get("status")
    async with db(request).session() as s:
        camp = await _campaign(s, request)
        stmt = select(EmailMessage).where(
            EmailMessage.campaign_id == camp.id, EmailMessage.id > after
        )
        if status:
            stmt = stmt.where(EmailMessage.status == status)
        rows = list(await s.scalars(stmt.order_by(EmailMessage.id).limit(limit)))
        p = principal(request)
        hide = any("email" in p.masked(t) for t in ("contact", "lead", "account"))
        items = []
        for r in rows:
            d = audit.jsonable(records.row_dict(r))
            if hide and d.get("to_address"):
                d["to_address"] = mask_value(d["to_address"])
            items.append(d)
    return json_response(
        {"items": items, "next_after_id": rows[-1].id if len(rows) == limit else None}
    )


async def _render_preview(
    request: web.Request, tpl: EmailTemplate, camp: Campaign | None, data: PreviewIn
) -> dict[str, Any]:
    p = principal(request)
    async with db(request).session() as s:
        record = await records.get(s, p, SPECS[data.entity_type], data.entity_id)
        links = mailer(request).links
        rendered, unsubscribe = await render_for(
            s, tpl, data.entity_type, record, camp, links, 0, language=data.language
        )
    return {
        "language": rendered.language,
        "subject": rendered.subject,
        "html": rendered.html,
        "text": rendered.text,
        "unsubscribe_url": unsubscribe,
    }


async def campaign_preview_email(request: web.Request) -> web.Response:
    """The campaign's message as one record would get it."""
    principal(request).require("campaign", "edit")
    data = await body(request, PreviewIn)
    async with db(request).session() as s:
        camp = await _campaign(s, request)
        setup = await s.get(EmailCampaign, camp.id)
        if setup is None:
            raise ValidationFailed.one("template_id", "set the campaign's e-mail template first")
        tpl = await s.get(EmailTemplate, setup.template_id)
    assert tpl is not None
    return json_response(await _render_preview(request, tpl, camp, data))


# -- templates -------------------------------------------------------------------------------


async def list_templates(request: web.Request) -> web.Response:
    """E-mail templates."""
    principal(request).require("campaign", "view")
    async with db(request).session() as s:
        rows = await s.scalars(select(EmailTemplate).order_by(EmailTemplate.name))
        return json_response({"items": [_template_json(t) for t in rows]})


async def create_template(request: web.Request) -> web.Response:
    """Create a bilingual e-mail template (placeholders checked)."""
    p = principal(request)
    p.require("campaign", "edit")
    data = await body(request, TemplateIn)
    values = data.model_dump()
    _check_template(values)
    async with db(request).session() as s:
        if await s.scalar(select(EmailTemplate.id).where(EmailTemplate.name == data.name)):
            raise ValidationFailed.one("name", f"a template named {data.name!r} exists")
        tpl = EmailTemplate(**values)
        s.add(tpl)
        await s.flush()
        audit.record(s, p.user_id, "create", "email_template", tpl.id, audit.diff({}, values))
        out = _template_json(tpl)
    return json_response(out, status=201)


async def _template(s: Any, request: web.Request) -> EmailTemplate:
    tpl = await s.get(EmailTemplate, match_id(request))
    if tpl is None:
        raise NotFound(f"no e-mail template {request.match_info['id']}")
    return tpl


async def get_template(request: web.Request) -> web.Response:
    """One e-mail template."""
    principal(request).require("campaign", "view")
    async with db(request).session() as s:
        return json_response(_template_json(await _template(s, request)))


async def patch_template(request: web.Request) -> web.Response:
    """Change an e-mail template (placeholders checked)."""
    p = principal(request)
    p.require("campaign", "edit")
    data = await body(request, TemplatePatch)
    values = data.model_dump(exclude_unset=True)
    for key in ("name", "default_language", "subject_fa", "subject_en", "html_fa", "html_en"):
        if key in values and values[key] is None:
            raise ValidationFailed.one(key, "may not be null")
    _check_template(values)
    async with db(request).session() as s:
        tpl = await _template(s, request)
        if "name" in values and values["name"] != tpl.name:
            if await s.scalar(select(EmailTemplate.id).where(EmailTemplate.name == values["name"])):
                raise ValidationFailed.one("name", f"a template named {values['name']!r} exists")
        before = {k: getattr(tpl, k) for k in values}
        for k, v in values.items():
            setattr(tpl, k, v)
        await s.flush()
        audit.record(s, p.user_id, "update", "email_template", tpl.id, audit.diff(before, values))
        out = _template_json(tpl)
    return json_response(out)


async def delete_template(request: web.Request) -> web.Response:
    """Delete an e-mail template no campaign uses."""
    p = principal(request)
    p.require("campaign", "delete")
    async with db(request).session() as s:
        tpl = await _template(s, request)
        used = await s.scalar(select(func.count()).where(EmailCampaign.template_id == tpl.id))
        if used:
            raise Conflict(f"the template is used by {used} campaign(s)")
        await s.delete(tpl)
        audit.record(s, p.user_id, "delete", "email_template", tpl.id, name=tpl.name)
    return web.Response(status=204)


async def preview_template(request: web.Request) -> web.Response:
    """A template rendered for one record, in their language."""
    principal(request).require("campaign", "view")
    data = await body(request, PreviewIn)
    async with db(request).session() as s:
        tpl = await _template(s, request)
    return json_response(await _render_preview(request, tpl, None, data))


# -- inbound and suppressions ----------------------------------------------------------------


async def _read_raw(request: web.Request) -> bytes:
    if (request.content_length or 0) > MAX_INBOUND_BYTES:
        raise ValidationFailed.one("body", f"larger than {MAX_INBOUND_BYTES} bytes")
    raw = await request.read()
    if len(raw) > MAX_INBOUND_BYTES:
        raise ValidationFailed.one("body", f"larger than {MAX_INBOUND_BYTES} bytes")
    if not raw.strip():
        raise ValidationFailed.one("body", "send the raw message (message/rfc822)")
    return raw


async def inbound_api(request: web.Request) -> web.Response:
    """Record a bounce or reply (the raw message as the body)."""
    p = principal(request)
    p.require("campaign", "edit")
    raw = await _read_raw(request)
    limit = settings(request).email.soft_bounce_limit
    async with db(request).session() as s:
        result = await inbound.ingest(s, raw, soft_limit=limit)
    return json_response(result.as_json(), status=200 if result.duplicate else 201)


async def list_suppressions(request: web.Request) -> web.Response:
    """Addresses never mailed again (``address=`` to look one up)."""
    principal(request).require("campaign", "edit")
    limit = int_param(request, "limit", 100, hi=500)
    async with db(request).session() as s:
        stmt = select(EmailSuppression).order_by(EmailSuppression.created_at.desc())
        if request.query.get("address"):
            stmt = stmt.where(EmailSuppression.address == request.query["address"].lower())
        rows = await s.scalars(stmt.limit(limit))
        items = [audit.jsonable(records.row_dict(r)) for r in rows]
    return json_response({"items": items})


def campaign_routes() -> list[web.RouteDef]:
    """The ``/api/v1`` routes; added before the generic record routes (crm/api)."""
    v = "/api/v1"
    return [
        web.get(f"{v}/segments/schema", segment_schema),
        web.post(f"{v}/segments/preview", preview_filter),
        web.post(f"{v}/segments", create_segment),
        web.patch(f"{v}/segments/{{id}}", patch_segment),
        web.delete(f"{v}/segments/{{id}}", delete_segment),
        web.get(f"{v}/segments/{{id}}/count", segment_count),
        web.get(f"{v}/segments/{{id}}/preview", segment_preview),
        web.post(f"{v}/segments/{{id}}/members", segment_members),
        web.post(f"{v}/segments/{{id}}/freeze", segment_freeze),
        web.get(f"{v}/campaigns/compare", compare_campaigns),
        web.get(f"{v}/campaigns/{{id}}/results", campaign_results_view),
        web.get(f"{v}/campaigns/{{id}}/audience", campaign_audience),
        web.get(f"{v}/campaigns/{{id}}/email", get_email_setup),
        web.put(f"{v}/campaigns/{{id}}/email", put_email_setup),
        web.post(f"{v}/campaigns/{{id}}/send", send_campaign),
        web.get(f"{v}/campaigns/{{id}}/messages", campaign_messages),
        web.post(f"{v}/campaigns/{{id}}/preview-email", campaign_preview_email),
        web.get(f"{v}/email-templates", list_templates),
        web.post(f"{v}/email-templates", create_template),
        web.get(f"{v}/email-templates/{{id}}", get_template),
        web.patch(f"{v}/email-templates/{{id}}", patch_template),
        web.delete(f"{v}/email-templates/{{id}}", delete_template),
        web.post(f"{v}/email-templates/{{id}}/preview", preview_template),
        web.post(f"{v}/email/inbound", inbound_api),
        web.get(f"{v}/email/suppressions", list_suppressions),
    ]


# -- public links ----------------------------------------------------------------------------


def _signer(request: web.Request) -> Signer:
    return mailer(request).signer


def _client(request: web.Request) -> dict[str, Any]:
    return {"user_agent": request.headers.get("User-Agent", "")}


async def open_pixel(request: web.Request) -> web.Response:
    """The 1x1 GIF; the open is recorded when the token is ours. Always answers the image."""
    try:
        mid = parse_open(_signer(request).verify(request.match_info["token"]))
        async with request.app[_DB].session() as s:
            await tracking.record_open(s, mid, utcnow(), _client(request))
    except BadToken:
        pass
    except Exception:
        log.exception("recording an open failed")
    return web.Response(body=PIXEL, content_type="image/gif", headers=NO_STORE)


async def click(request: web.Request) -> web.Response:
    """Redirect to the signed URL (no other URL: no open redirect) and record the click."""
    try:
        mid, url = parse_click(_signer(request).verify(request.match_info["token"]))
    except BadToken:
        raise web.HTTPNotFound(text="this link is not valid") from None
    try:
        async with request.app[_DB].session() as s:
            await tracking.record_click(s, mid, url, utcnow(), _client(request))
    except Exception:  # the customer still gets where they were going
        log.exception("recording a click failed")
    raise web.HTTPFound(url, headers=NO_STORE)


PAGE = """<!doctype html>
<html lang="{lang}" dir="{dir}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:Tahoma,Vazirmatn,Arial,sans-serif;max-width:32rem;margin:3rem auto;
padding:0 1rem;line-height:1.8}}button{{font:inherit;padding:.5rem 1.5rem}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""
TEXTS = {
    "fa": {
        "ask": "لغو اشتراک",
        "ask_body": "<p>دیگر نامهٔ تبلیغاتی به نشانی <bdi>{address}</bdi> فرستاده نشود؟</p>"
        '<form method="post"><button type="submit">بله، اشتراکم را لغو کن</button></form>',
        "done": "اشتراک شما لغو شد",
        "done_body": "<p>از این پس نامهٔ تبلیغاتی برای شما فرستاده نمی‌شود.</p>",
        "bad": "پیوند نامعتبر",
        "bad_body": "<p>این پیوند لغو اشتراک معتبر نیست.</p>",
    },
    "en": {
        "ask": "Unsubscribe",
        "ask_body": "<p>Stop sending marketing e-mail to <bdi>{address}</bdi>?</p>"
        '<form method="post"><button type="submit">Yes, unsubscribe me</button></form>',
        "done": "You are unsubscribed",
        "done_body": "<p>You will not receive marketing e-mail from us again.</p>",
        "bad": "Invalid link",
        "bad_body": "<p>This unsubscribe link is not valid.</p>",
    },
}


def _page(lang: str, key: str, status: int = 200, **fmt: str) -> web.Response:
    texts = TEXTS.get(lang, TEXTS["fa"])
    text = PAGE.format(
        lang=lang,
        dir="rtl" if lang == "fa" else "ltr",
        title=texts[key],
        body=texts[key + "_body"].format(**{k: html.escape(v) for k, v in fmt.items()}),
    )
    return web.Response(text=text, content_type="text/html", status=status, headers=NO_STORE)


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET asks (link scanners must not unsubscribe anyone); POST does it, also as the
    one-click ``List-Unsubscribe-Post`` of mail clients (RFC 8058)."""
    try:
        mid, entity_type, entity_id = parse_unsubscribe(
            _signer(request).verify(request.match_info["token"])
        )
    except BadToken:
        return _page(request.query.get("lang", "fa"), "bad", status=404)
    async with request.app[_DB].session() as s:
        msg = await s.get(EmailMessage, mid)
        lang = msg.language if msg is not None else "fa"
        if request.method == "GET":
            model = ENTITY_MODELS[entity_type]
            record = await s.get(model, entity_id)
            address = (msg.to_address if msg else None) or getattr(record, "email", None) or ""
            return _page(lang, "ask", address=mask_value(address) or "")
        form = await request.post()
        one_click = form.get("List-Unsubscribe") == "One-Click"
        result = await tracking.unsubscribe(
            s, mid, entity_type, entity_id, utcnow(), source="one_click" if one_click else "link"
        )
    return _page(result.language or lang, "done")


async def inbound_hook(request: web.Request) -> web.Response:
    """Bounces and replies piped in by the MTA: ``X-Tamas-Inbound-Secret`` must match."""
    config = settings(request).email
    secret = config.inbound_secret
    given = request.headers.get("X-Tamas-Inbound-Secret", "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return json_response({"error": "unknown or missing inbound secret"}, status=403)
    try:
        raw = await _read_raw(request)
    except ValidationFailed as exc:
        return json_response({"error": str(exc)}, status=422)
    async with request.app[_DB].session() as s:
        result = await inbound.ingest(s, raw, soft_limit=config.soft_bounce_limit)
    return json_response(result.as_json(), status=200 if result.duplicate else 201)


_DB = web.AppKey("campaigns_db", Database)


def build_mailer(database: Database, config: Settings) -> CampaignMailer:
    mail = config.email
    mc = MailConfig(
        from_address=mail.from_address,
        from_name=mail.from_name,
        public_url=mail.public_url,
        bounce_address=mail.bounce_address,
        message_id_domain=mail.message_id_domain,
    )

    def transport() -> SmtpTransport:
        return SmtpTransport(
            mail.smtp_host,
            mail.smtp_port,
            security=mail.smtp_security,
            username=mail.smtp_username,
            password=mail.smtp_password,
            timeout=mail.smtp_timeout,
        )

    return CampaignMailer(
        database, mc, Signer(config.ensure_secret()), transport, mail.rate_per_minute
    )


def setup_campaigns(app: web.Application, database: Database, config: Settings) -> None:
    """The mailer, the public e-mail links and the background jobs (scheduler, maildir).

    The ``/api/v1`` routes are added by ``crm.api.setup_api`` (``campaign_routes``)."""
    app[_DB] = database
    app[MAILER] = build_mailer(database, config)
    app.router.add_get("/email/o/{token}.gif", open_pixel)
    app.router.add_get("/email/c/{token}", click)
    app.router.add_get("/email/u/{token}", unsubscribe_page)
    app.router.add_post("/email/u/{token}", unsubscribe_page)
    app.router.add_post("/email/inbound", inbound_hook)

    async def jobs(app: web.Application) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if config.email.enabled:
            tasks.append(
                asyncio.create_task(
                    app[MAILER].run_scheduler(config.email.scheduler_seconds),
                    name="campaign-scheduler",
                )
            )
        if config.email.maildir is not None:

            async def ingest(raw: bytes) -> object:
                async with database.session() as s:
                    return await inbound.ingest(s, raw, soft_limit=config.email.soft_bounce_limit)

            tasks.append(
                asyncio.create_task(
                    run_poller(config.email.maildir, ingest, config.email.poll_seconds),
                    name="campaign-maildir",
                )
            )
        yield
        await cancel_and_wait(tasks)
        await app[MAILER].stop()

    app.cleanup_ctx.append(jobs)


__all__ = ["MAILER", "campaign_routes", "setup_campaigns"]
