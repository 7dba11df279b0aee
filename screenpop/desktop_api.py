"""The few REST routes the agent desktop and the wallboard need beyond the CRM and CTI APIs.

* ``GET /api/v1/desktop/config``: disposition codes, pause reasons, the user's queues and
  (for supervisors) the agents they may act for.
* ``GET /api/v1/search?q=``: one search box over contacts, leads and accounts by name,
  e-mail or phone number in any form (the one normalizer in ``crm.phones`` decides).
* ``POST /api/v1/{contacts|leads|accounts}/{id}/phones``: attach a caller's number to an
  existing record ("link to record" on an unknown caller). Agents see phones masked and so
  cannot rewrite the phone list; adding one number reveals none and is audited.
* ``PATCH /api/v1/me``: the user's own interface language.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field, model_validator
from sqlalchemy import select

from crm import audit
from crm.api.base import body, db, int_param, json_response, match_id, principal, settings
from crm.errors import ValidationFailed
from crm.models import Team, User
from crm.permissions import Principal
from crm.phones import digits_only, try_normalize
from crm.schemas import PhoneIn, PhoneKind, Strict
from crm.services import phones, records
from crm.services.entities import SPECS
from crm.services.users import present_user

CUSTOMER_ENTITIES = ("contact", "lead", "account")
# A query with this many digits is also tried as a phone number.
PHONE_DIGITS = 5


class MeIn(Strict):
    language: Literal["fa", "en"]


class AttachPhoneIn(Strict):
    """The number itself, or the call activity whose caller it is (agents see callers'
    numbers masked, so they name the call instead)."""

    number: str | None = Field(default=None, min_length=1, max_length=64)
    activity_id: int | None = None
    kind: PhoneKind = "mobile"

    @model_validator(mode="after")
    def _one_source(self) -> AttachPhoneIn:
        if (self.number is None) == (self.activity_id is None):
            raise ValueError("give either number or activity_id")
        return self


# -- configuration --------------------------------------------------------------------------


async def _team_queues(session: Any, p: Principal) -> list[str]:
    stmt = select(Team.queue).where(Team.queue.is_not(None))
    if not p.is_admin:
        stmt = stmt.where(Team.id.in_(sorted(p.team_ids)))
    return sorted({q for q in await session.scalars(stmt) if q})


async def _agents_for(session: Any, p: Principal) -> list[dict[str, Any]]:
    """The users a supervisor may act for (their teams), everyone for an admin."""
    if p.scope not in ("team", "all"):
        return []
    stmt = select(User).where(User.is_active.is_(True)).order_by(User.full_name, User.username)
    if not p.is_admin:
        stmt = stmt.where(User.id.in_(sorted(p.teammate_ids | {p.user_id})))
    return [
        {"id": u.id, "username": u.username, "name": u.full_name or u.username}
        for u in await session.scalars(stmt)
    ]


async def desktop_config(request: web.Request) -> web.Response:
    p = principal(request)
    cfg = settings(request)
    async with db(request).session() as s:
        me = present_user(await s.get_one(User, p.user_id))
        queues = await _team_queues(s, p)
        agents = await _agents_for(s, p)
    return json_response(
        {
            "user": {**me, "scope": p.scope},
            "dispositions": [d.model_dump() for d in cfg.desktop.dispositions],
            "pause_reasons": [r.model_dump() for r in cfg.desktop.pause_reasons],
            "queues": queues,
            "agents": agents,
            "timezone": cfg.timezone,
            "phone_region": cfg.phone_region,
        }
    )


async def patch_me(request: web.Request) -> web.Response:
    """Users choose their own language (the role need not allow editing users)."""
    data = await body(request, MeIn)
    p = principal(request)
    async with db(request).session() as s:
        user = await s.get_one(User, p.user_id)
        if user.language != data.language:
            audit.record(
                s,
                p.user_id,
                "update",
                "user",
                user.id,
                {"language": [user.language, data.language]},
            )
            user.language = data.language
        return json_response(present_user(user))


# -- search ---------------------------------------------------------------------------------


def _summary(entity: str, row: dict[str, Any], by_phone: bool) -> dict[str, Any]:
    if entity == "account":
        name, detail = row.get("name") or "", row.get("city") or row.get("industry")
    else:
        name = row.get("name") or ""
        detail = row.get("company") if entity == "lead" else None
    return {
        "type": entity,
        "id": row["id"],
        "name": name,
        "detail": detail,
        "email": row.get("email"),
        "account_id": row.get("account_id"),
        "phones": [{"number": ph["number"], "kind": ph["kind"]} for ph in row.get("phones", [])],
        "vip": bool(row.get("is_vip")),
        "do_not_call": bool(row.get("do_not_call")),
        "status": row.get("status"),
        "matched_phone": by_phone,
        "url": f"/app#/{entity}/{row['id']}",
    }


async def customer_search(
    session: Any, p: Principal, query: str, region: str, dialect: str, limit: int
) -> list[dict[str, Any]]:
    """Records matching ``query``: exact phone matches first (any written form of the
    number), then name / e-mail / partial-number matches; only what ``p`` may see."""
    found: dict[str, list[int]] = {e: [] for e in CUSTOMER_ENTITIES}
    by_phone: set[tuple[str, int]] = set()
    if len(digits_only(query)) >= PHONE_DIGITS:
        e164 = try_normalize(query, region)
        if e164:
            for m in await phones.lookup(session, [e164]):
                if m.entity_type in found and m.entity_id not in found[m.entity_type]:
                    found[m.entity_type].append(m.entity_id)
                    by_phone.add((m.entity_type, m.entity_id))
    for entity in CUSTOMER_ENTITIES:
        spec = SPECS[entity]
        if not p.can(entity, "view"):
            found[entity] = []
            continue
        stmt = records.filtered(spec, p, {"q": query}, dialect)
        ids = await session.scalars(stmt.with_only_columns(spec.model.id).limit(limit))
        found[entity] += [i for i in ids if i not in found[entity]]
    out: list[dict[str, Any]] = []
    for entity in CUSTOMER_ENTITIES:
        spec = SPECS[entity]
        if not found[entity]:
            continue
        rows = await session.scalars(
            records.visible(spec, p).where(spec.model.id.in_(found[entity]))
        )
        presented = {r["id"]: r for r in await records.present_many(session, p, spec, list(rows))}
        for rid in found[entity]:
            if rid in presented:
                out.append(_summary(entity, presented[rid], (entity, rid) in by_phone))
    out.sort(key=lambda r: not r["matched_phone"])  # stable: phone hits first
    return out[:limit]


async def search(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    if not query:
        raise ValidationFailed.one("q", "type a name, phone number or e-mail")
    limit = int_param(request, "limit", 20, hi=100)
    async with db(request).session() as s:
        items = await customer_search(
            s, principal(request), query, settings(request).phone_region, db(request).dialect, limit
        )
    return json_response({"query": query, "items": items})


# -- linking a number to a record -------------------------------------------------------------


async def attach_phone(request: web.Request) -> web.Response:
    entity = {"contacts": "contact", "leads": "lead", "accounts": "account"}[
        request.path.split("/")[3]
    ]
    spec = SPECS[entity]
    data = await body(request, AttachPhoneIn)
    p = principal(request)
    p.require(entity, "edit")
    region = settings(request).phone_region
    async with db(request).session() as s:
        obj = await records.get(s, p, spec, match_id(request))
        number = data.number
        if data.activity_id is not None:
            call = await records.get(s, p, SPECS["activity"], data.activity_id)
            if call.kind != "call" or not call.external_number:
                raise ValidationFailed.one("activity_id", "not a call with a known number")
            number = call.external_number
        assert number is not None
        new = phones.normalize_all([PhoneIn(number=number, kind=data.kind)], region, "number")[0]
        current = (await phones.phones_of(s, entity, [obj.id])).get(obj.id, [])
        if any(ph.e164 == new.e164 and ph.extension == new.extension for ph in current):
            return json_response({"added": False, "phones": len(current)})
        before = await records.snapshot(s, spec, obj)
        kept = [
            phones.NormalizedPhone(ph.e164, ph.raw, ph.kind, ph.extension, ph.is_primary)
            for ph in current
        ]
        if not kept:
            new = phones.NormalizedPhone(new.e164, new.raw, new.kind, new.extension, True)
        await phones.set_phones(s, entity, obj.id, [*kept, new])
        await s.flush()
        await records.reindex(s, spec, obj)
        after = await records.snapshot(s, spec, obj)
        audit.record(
            s, p.user_id, "update", entity, obj.id, audit.diff(before, after), via="attach_phone"
        )
    return json_response({"added": True, "phones": len(kept) + 1}, 201)


def desktop_api_routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/desktop/config", desktop_config),
        web.patch("/api/v1/me", patch_me),
        web.get("/api/v1/search", search),
        *(
            web.post(f"/api/v1/{plural}/{{id}}/phones", attach_phone)
            for plural in ("contacts", "leads", "accounts")
        ),
    ]
