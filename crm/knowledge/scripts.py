"""Call scripts filled in with the customer's fields, as the agent may see them.

A script belongs to a campaign (``campaigns.call_script``) or a lead list
(``lead_lists.call_script``); both are templates (crm/knowledge/templates.py). The values come
from the record as the REST API presents it to this user, so a masked phone or e-mail stays
masked in the script, and sensitive custom fields show ``****``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import jdatetime
from sqlalchemy.ext.asyncio import AsyncSession

from crm.errors import NotFound, ValidationFailed
from crm.knowledge import templates
from crm.models import Account, Campaign, LeadList, User
from crm.permissions import Principal
from crm.services import extras, records
from crm.services.entities import SPECS

CUSTOMERS = ("contact", "lead", "account")
PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")

# Columns never offered to templates: keys, bookkeeping, and what only the system reads.
_HIDDEN = {
    "owner_id",
    "team_id",
    "account_id",
    "lead_list_id",
    "campaign_id",
    "merged_into_id",
    "converted_contact_id",
    "converted_account_id",
    "converted_deal_id",
    "deleted_at",
    "updated_at",
    "phones_masked",
    "phones",
    "custom",
    "tags",
}
_USER_FIELDS = ("full_name", "username", "email", "extension")
_CAMPAIGN_FIELDS = ("name", "offer", "channel", "starts_at", "ends_at")
_LEAD_LIST_FIELDS = ("name", "description")


def format_value(value: Any, language: str, tz: ZoneInfo) -> str | None:
    """A field's value as an agent reads it in ``language`` (Jalali dates in Persian)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return ("بله" if value else "خیر") if language == "fa" else ("yes" if value else "no")
    if isinstance(value, dt.datetime | dt.date | str) and _looks_like_date(value):
        day = _as_date(value, tz)
        if day is not None:
            if language == "fa":
                j = jdatetime.date.fromgregorian(date=day)
                return f"{j.year:04d}/{j.month:02d}/{j.day:02d}".translate(PERSIAN_DIGITS)
            return day.isoformat()
    if isinstance(value, int | float | Decimal):
        text = str(value)
        return text.translate(PERSIAN_DIGITS) if language == "fa" else text
    if isinstance(value, list):
        joined = ("، " if language == "fa" else ", ").join(str(v) for v in value if v is not None)
        return joined or None
    return str(value)


def _looks_like_date(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    return len(value) >= 10 and value[4] == "-" and value[7] == "-" and value[:4].isdigit()


def _as_date(value: Any, tz: ZoneInfo) -> dt.date | None:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(tz).date()
    if isinstance(value, dt.date):
        return value
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        return _as_date(dt.datetime.fromisoformat(value), tz)
    except ValueError:
        return None


class Context:
    """Template values (path -> text) and which of them are shown masked."""

    def __init__(self, language: str, tz: ZoneInfo) -> None:
        self.language = language
        self.tz = tz
        self.values: dict[str, str | None] = {}
        self.masked: set[str] = set()

    def put(self, path: str, value: Any, masked: bool = False) -> None:
        self.values[path] = format_value(value, self.language, self.tz)
        if masked:
            self.masked.add(path)

    def put_record(self, prefix: str, data: dict[str, Any], masked: frozenset[str]) -> None:
        for key, value in data.items():
            if key in _HIDDEN or (key.endswith("_id") and key != "id"):
                continue
            self.put(prefix + key, value, key in masked)


def _present_user(ctx: Context, prefix: str, user: User | None) -> None:
    for f in _USER_FIELDS:
        ctx.put(f"{prefix}.{f}", getattr(user, f) if user is not None else None)
    if user is not None and not user.full_name:
        ctx.put(f"{prefix}.full_name", user.username)


async def customer_context(
    session: AsyncSession,
    p: Principal,
    entity: str | None,
    obj: Any,
    language: str,
    tz: ZoneInfo,
) -> Context:
    """The template values of one customer record (None: only agent and date fields)."""
    ctx = Context(language, tz)
    me = await session.get(User, p.user_id)
    _present_user(ctx, "agent", me)
    ctx.put("today", dt.datetime.now(tz).date())
    if entity is None or obj is None:
        return ctx
    spec = SPECS[entity]
    data = await records.present(session, p, spec, obj)
    masked = p.masked(entity)
    ctx.put_record("", data, masked)
    ctx.put_record(f"{entity}.", data, masked)
    ctx.put("full_name", data.get("name"))
    phones = data.get("phones") or []
    primary = next((ph for ph in phones if ph.get("is_primary")), phones[0] if phones else None)
    ctx.put("phone", primary["number"] if primary else None, "phones" in masked)
    ctx.put("tags", data.get("tags") or None)
    sensitive = "sensitive_custom" in masked
    defs = await extras.field_defs(session, entity) if spec.custom else {}
    for key, value in (data.get("custom") or {}).items():
        hidden = sensitive and key in defs and defs[key].sensitive
        ctx.put(f"custom.{key}", value, hidden)
        if key not in ctx.values:
            ctx.put(key, value, hidden)
    if entity == "account":
        ctx.put_record("account.", data, masked)
    elif entity == "contact" and obj.account_id and p.can("account", "view"):
        account = await session.get(Account, obj.account_id)
        if account is not None and account.deleted_at is None:
            acc = await records.present(session, p, SPECS["account"], account)
            ctx.put_record("account.", acc, p.masked("account"))
    elif entity == "lead":
        ctx.put("account.name", obj.company)
    owner = await session.get(User, obj.owner_id) if obj.owner_id else None
    _present_user(ctx, "owner", owner)
    return ctx


async def field_paths(session: AsyncSession, entity: str) -> list[str]:
    """The paths a template may use for ``entity`` records (for the script editor)."""
    spec = SPECS[entity]
    cols = [c for c in records.columns(spec.model) if c not in _HIDDEN and not c.endswith("_id")]
    out = ["full_name", "phone", "tags", "today", *cols]
    out += [f"{entity}.{c}" for c in cols]
    if entity in ("contact", "lead"):
        acc = records.columns(Account) if entity == "contact" else ["name"]
        out += [f"account.{c}" for c in acc if c not in _HIDDEN and not c.endswith("_id")]
    out += [f"owner.{f}" for f in _USER_FIELDS] + [f"agent.{f}" for f in _USER_FIELDS]
    out += [f"campaign.{f}" for f in _CAMPAIGN_FIELDS]
    out += [f"lead_list.{f}" for f in _LEAD_LIST_FIELDS]
    if spec.custom:
        out += [f"custom.{k}" for k in sorted(await extras.field_defs(session, entity))]
    return list(dict.fromkeys(out))


def _choose_language(requested: str | None, customer: Any, p: Principal) -> str:
    if requested is not None:
        if requested not in templates.LANGUAGES:
            raise ValidationFailed.one("lang", "must be fa or en")
        return requested
    lang = getattr(customer, "language", None)
    if lang in templates.LANGUAGES:
        return str(lang)
    return p.language if p.language in templates.LANGUAGES else "fa"


def _rendered(
    source: str, kind: str, obj_id: int | None, name: str | None, ctx: Context
) -> dict[str, Any]:
    out = templates.render(source, ctx.values, ctx.language, frozenset(ctx.masked))
    return {
        "source": kind,
        "id": obj_id,
        "name": name,
        "segments": [s.to_dict() for s in out.segments],
        "text": out.text,
        "html": out.html,
        "missing": out.missing,
        "problems": out.problems,
    }


async def _campaign(session: AsyncSession, p: Principal, campaign_id: int) -> Campaign:
    # Permission only, not record scope: an agent calls for campaigns owned by supervisors.
    p.require("campaign", "view")
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.deleted_at is not None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


async def _lead_list(session: AsyncSession, p: Principal, list_id: int) -> LeadList:
    p.require("lead_list", "view")
    lead_list = await session.get(LeadList, list_id)
    if lead_list is None:
        raise NotFound(f"no lead_list {list_id}")
    return lead_list


async def render_scripts(
    session: AsyncSession,
    p: Principal,
    *,
    entity: str | None,
    entity_id: int | None,
    campaign_id: int | None,
    lead_list_id: int | None,
    language: str | None,
    tz: ZoneInfo,
    template: str | None = None,
) -> dict[str, Any]:
    """The scripts for a call with this customer, filled in: the campaign's first, then the
    lead list's. Without explicit ids a lead brings its own campaign and lead list, and a
    campaign its lead list. ``template`` renders that text instead (the editor's preview)."""
    if entity is not None and entity not in CUSTOMERS:
        raise ValidationFailed.one("entity", "must be contact, lead or account")
    obj = None
    if entity is not None and entity_id is not None:
        obj = await records.get(session, p, SPECS[entity], entity_id)  # scope and permission
    lang = _choose_language(language, obj, p)
    ctx = await customer_context(session, p, entity, obj, lang, tz)
    if campaign_id is None and obj is not None and getattr(obj, "campaign_id", None):
        campaign_id = obj.campaign_id
    campaign = await _campaign(session, p, campaign_id) if campaign_id is not None else None
    if lead_list_id is None:
        lead_list_id = getattr(obj, "lead_list_id", None) or (
            campaign.lead_list_id if campaign is not None else None
        )
    lead_list = await _lead_list(session, p, lead_list_id) if lead_list_id is not None else None
    for f in _CAMPAIGN_FIELDS:
        ctx.put(f"campaign.{f}", getattr(campaign, f) if campaign is not None else None)
    for f in _LEAD_LIST_FIELDS:
        ctx.put(f"lead_list.{f}", getattr(lead_list, f) if lead_list is not None else None)
    scripts = []
    if template is not None:
        scripts.append(_rendered(template, "preview", None, None, ctx))
    else:
        if campaign is not None and campaign.call_script:
            scripts.append(
                _rendered(campaign.call_script, "campaign", campaign.id, campaign.name, ctx)
            )
        if lead_list is not None and lead_list.call_script:
            scripts.append(
                _rendered(lead_list.call_script, "lead_list", lead_list.id, lead_list.name, ctx)
            )
    record = None
    if obj is not None and entity is not None:
        record = {
            "type": entity,
            "id": obj.id,
            "name": ctx.values.get("full_name"),
        }
    return {
        "language": lang,
        "direction": "rtl" if lang == "fa" else "ltr",
        "record": record,
        "campaign_id": campaign.id if campaign is not None else None,
        "lead_list_id": lead_list.id if lead_list is not None else None,
        "scripts": scripts,
    }
