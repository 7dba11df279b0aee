"""REST routes generated for every CRM entity, plus their timelines, history and documents."""

from __future__ import annotations

from aiohttp import web

from crm.api.base import (
    TIMELINE_EXTRAS,
    body,
    db,
    int_param,
    json_response,
    match_id,
    principal,
    settings,
)
from crm.schemas import MergeIn
from crm.services import lifecycle, records, timeline
from crm.services.entities import SPECS, EntitySpec
from crm.services.timeline import _TIMELINE_FK


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


def _routes_for(spec: EntitySpec) -> list[web.RouteDef]:
    base = f"/api/v1/{spec.plural}"

    async def list_(request: web.Request) -> web.Response:
        p = principal(request)
        params = {k: v for k, v in request.query.items()}
        async with db(request).session() as s:
            page = await records.list_page(
                s, p, spec, params, db(request).dialect, int_param(request, "limit", 50)
            )
            items = await records.present_many(s, p, spec, page.items)
        return json_response({"items": items, "next_cursor": page.next_cursor})

    async def create(request: web.Request) -> web.Response:
        p = principal(request)
        data = await body(request, spec.create)
        async with db(request).session() as s:
            obj = await records.create(
                s, p, spec, data, settings(request).phone_region, _flag(request, "allow_duplicate")
            )
            out = await records.present(s, p, spec, obj)
        return json_response(out, status=201)

    async def get(request: web.Request) -> web.Response:
        p = principal(request)
        async with db(request).session() as s:
            obj = await records.get(s, p, spec, match_id(request))
            return json_response(await records.present(s, p, spec, obj))

    async def patch(request: web.Request) -> web.Response:
        p = principal(request)
        data = await body(request, spec.update)
        async with db(request).session() as s:
            obj = await records.update(
                s, p, spec, match_id(request), data, settings(request).phone_region
            )
            out = await records.present(s, p, spec, obj)
        return json_response(out)

    async def delete(request: web.Request) -> web.Response:
        async with db(request).session() as s:
            await records.delete(s, principal(request), spec, match_id(request))
        return web.Response(status=204)

    async def history(request: web.Request) -> web.Response:
        async with db(request).session() as s:
            items = await timeline.history(s, principal(request), spec.name, match_id(request))
        return json_response({"items": items})

    routes = [
        web.get(base, list_),
        web.post(base, create),
        web.get(base + "/{id}", get),
        web.patch(base + "/{id}", patch),
        web.delete(base + "/{id}", delete),
        web.get(base + "/{id}/history", history),
    ]
    if spec.name in _TIMELINE_FK:

        async def timeline_(request: web.Request) -> web.Response:
            kinds = [k for k in request.query.get("kind", "").split(",") if k]
            p = principal(request)
            async with db(request).session() as s:
                out = await timeline.timeline(
                    s,
                    p,
                    spec.name,
                    match_id(request),
                    request.query.get("cursor"),
                    int_param(request, "limit", 50, hi=200),
                    kinds,
                )
                for extra in request.app.get(TIMELINE_EXTRAS, ()):
                    await extra(s, p, out["items"])
            return json_response(out)

        routes.append(web.get(base + "/{id}/timeline", timeline_))
    if spec.name in ("contact", "account", "lead"):

        async def merge(request: web.Request) -> web.Response:
            """Merge duplicates into this record (their phones, activities, deals...)."""
            ids = (await body(request, MergeIn)).duplicate_ids
            async with db(request).session() as s:
                out = await lifecycle.merge(
                    s,
                    principal(request),
                    spec.name,
                    match_id(request),
                    ids,
                    settings(request).phone_region,
                )
            return json_response(out)

        routes.append(web.post(base + "/{id}/merge", merge))
    return routes


def record_routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = []
    for spec in SPECS.values():
        out += _routes_for(spec)
    return out
