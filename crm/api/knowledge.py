"""REST for the knowledge base (``/api/v1/kb/...``) and call scripts (``/api/v1/scripts/...``).

docs/knowledge.md describes both; permissions are in crm/knowledge/articles.py (who writes
and approves articles) and crm/knowledge/scripts.py (scripts show what the user may see).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field

from crm.api.base import body, db, int_param, json_response, match_id, principal, settings
from crm.errors import ValidationFailed
from crm.knowledge import articles as kb
from crm.knowledge import scripts
from crm.knowledge.templates import MAX_TEMPLATE
from crm.schemas import Strict

# -- knowledge base ---------------------------------------------------------------------------


def _opt_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed.one(name, "must be an integer") from None


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


async def list_categories(request: web.Request) -> web.Response:
    principal(request)
    async with db(request).session() as s:
        return json_response({"items": await kb.list_categories(s)})


async def create_category(request: web.Request) -> web.Response:
    data = await body(request, kb.CategoryIn)
    async with db(request).session() as s:
        cat = await kb.create_category(s, principal(request), data)
        return json_response(kb.present_category(cat), status=201)


async def patch_category(request: web.Request) -> web.Response:
    data = await body(request, kb.CategoryPatch)
    async with db(request).session() as s:
        cat = await kb.update_category(s, principal(request), match_id(request), data)
        return json_response(kb.present_category(cat))


async def delete_category(request: web.Request) -> web.Response:
    async with db(request).session() as s:
        await kb.delete_category(s, principal(request), match_id(request))
    return web.Response(status=204)


async def search_articles(request: web.Request) -> web.Response:
    """Search the knowledge base: ``q`` (folded full text), ``category_id``, ``language``
    (fa, en), ``drafts=1`` (authors: include unapproved articles), ``limit``."""
    lang = request.query.get("language") or None
    if lang is not None and lang not in ("fa", "en"):
        raise ValidationFailed.one("language", "must be fa or en")
    query = kb.Query(
        text=request.query.get("q", ""),
        category_id=_opt_int(request, "category_id"),
        language=lang,
        include_drafts=_flag(request, "drafts"),
        limit=int_param(request, "limit", 20, hi=100),
    )
    async with db(request).session() as s:
        items = await kb.search(s, principal(request), db(request).dialect, query)
    return json_response({"items": items})


async def create_article(request: web.Request) -> web.Response:
    data = await body(request, kb.ArticleIn)
    p = principal(request)
    async with db(request).session() as s:
        art, _ = await kb.create_article(s, p, data)
        aid = art.id
    async with db(request).session() as s:
        return json_response(await kb.get_article(s, p, aid), status=201)


async def get_article(request: web.Request) -> web.Response:
    async with db(request).session() as s:
        return json_response(await kb.get_article(s, principal(request), match_id(request)))


async def patch_article(request: web.Request) -> web.Response:
    data = await body(request, kb.ArticlePatch)
    p = principal(request)
    async with db(request).session() as s:
        await kb.update_article(s, p, match_id(request), data)
    async with db(request).session() as s:
        return json_response(await kb.get_article(s, p, match_id(request)))


async def delete_article(request: web.Request) -> web.Response:
    async with db(request).session() as s:
        await kb.archive(s, principal(request), match_id(request))
    return web.Response(status=204)


async def add_version(request: web.Request) -> web.Response:
    data = await body(request, kb.VersionIn)
    async with db(request).session() as s:
        v = await kb.add_version(s, principal(request), match_id(request), data)
        return json_response(kb.present_version(v), status=201)


async def get_version(request: web.Request) -> web.Response:
    async with db(request).session() as s:
        return json_response(await kb.get_version(s, principal(request), match_id(request)))


async def patch_version(request: web.Request) -> web.Response:
    data = await body(request, kb.VersionPatch)
    async with db(request).session() as s:
        v = await kb.edit_draft(s, principal(request), match_id(request), data)
        return json_response(kb.present_version(v))


async def approve_version(request: web.Request) -> web.Response:
    """Approve a version: it becomes the article's current version (what agents read)."""
    data = await body(request, kb.ReviewIn) if request.can_read_body else kb.ReviewIn()
    p = principal(request)
    async with db(request).session() as s:
        art = await kb.approve(s, p, match_id(request), data.note)
        aid = art.id
    async with db(request).session() as s:
        return json_response(await kb.get_article(s, p, aid))


async def reject_version(request: web.Request) -> web.Response:
    data = await body(request, kb.ReviewIn) if request.can_read_body else kb.ReviewIn()
    async with db(request).session() as s:
        v = await kb.reject(s, principal(request), match_id(request), data.note)
        return json_response(kb.present_version(v))


# -- call scripts -----------------------------------------------------------------------------


def _record_param(request: web.Request) -> tuple[str | None, int | None]:
    given = [
        (e, request.query[f"{e}_id"]) for e in scripts.CUSTOMERS if request.query.get(f"{e}_id")
    ]
    if len(given) > 1:
        raise ValidationFailed.one("contact_id", "give one of contact_id, lead_id, account_id")
    if not given:
        return None, None
    entity, raw = given[0]
    try:
        return entity, int(raw)
    except ValueError:
        raise ValidationFailed.one(f"{entity}_id", "must be an integer") from None


async def render_scripts(request: web.Request) -> web.Response:
    """The call scripts for a customer, filled in: ``contact_id`` | ``lead_id`` |
    ``account_id``, optional ``campaign_id``, ``lead_list_id``, ``lang`` (fa, en)."""
    entity, rid = _record_param(request)
    async with db(request).session() as s:
        out = await scripts.render_scripts(
            s,
            principal(request),
            entity=entity,
            entity_id=rid,
            campaign_id=_opt_int(request, "campaign_id"),
            lead_list_id=_opt_int(request, "lead_list_id"),
            language=request.query.get("lang") or None,
            tz=ZoneInfo(settings(request).timezone),
        )
    return json_response(out)


class PreviewIn(Strict):
    template: str = Field(max_length=MAX_TEMPLATE)
    contact_id: int | None = None
    lead_id: int | None = None
    account_id: int | None = None
    campaign_id: int | None = None
    lead_list_id: int | None = None
    lang: str | None = None


async def preview_script(request: web.Request) -> web.Response:
    """Render a template being written, for a customer (placeholders for missing fields)."""
    data = await body(request, PreviewIn)
    given = [(e, getattr(data, f"{e}_id")) for e in scripts.CUSTOMERS if getattr(data, f"{e}_id")]
    if len(given) > 1:
        raise ValidationFailed.one("contact_id", "give one of contact_id, lead_id, account_id")
    entity, rid = given[0] if given else (None, None)
    async with db(request).session() as s:
        out = await scripts.render_scripts(
            s,
            principal(request),
            entity=entity,
            entity_id=rid,
            campaign_id=data.campaign_id,
            lead_list_id=data.lead_list_id,
            language=data.lang,
            tz=ZoneInfo(settings(request).timezone),
            template=data.template,
        )
    return json_response(out)


async def script_fields(request: web.Request) -> web.Response:
    """The field paths a script may use for ``entity`` (contact, lead, account)."""
    entity = request.query.get("entity", "contact")
    if entity not in scripts.CUSTOMERS:
        raise ValidationFailed.one("entity", "must be contact, lead or account")
    principal(request).require(entity, "view")
    async with db(request).session() as s:
        return json_response({"entity": entity, "fields": await scripts.field_paths(s, entity)})


def knowledge_routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/kb/categories", list_categories),
        web.post("/api/v1/kb/categories", create_category),
        web.patch("/api/v1/kb/categories/{id}", patch_category),
        web.delete("/api/v1/kb/categories/{id}", delete_category),
        web.get("/api/v1/kb/articles", search_articles),
        web.post("/api/v1/kb/articles", create_article),
        web.get("/api/v1/kb/articles/{id}", get_article),
        web.patch("/api/v1/kb/articles/{id}", patch_article),
        web.delete("/api/v1/kb/articles/{id}", delete_article),
        web.post("/api/v1/kb/articles/{id}/versions", add_version),
        web.get("/api/v1/kb/versions/{id}", get_version),
        web.patch("/api/v1/kb/versions/{id}", patch_version),
        web.post("/api/v1/kb/versions/{id}/approve", approve_version),
        web.post("/api/v1/kb/versions/{id}/reject", reject_version),
        web.get("/api/v1/scripts/render", render_scripts),
        web.post("/api/v1/scripts/preview", preview_script),
        web.get("/api/v1/scripts/fields", script_fields),
    ]
