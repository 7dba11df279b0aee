"""REST API of the call routing under ``/api/v1/routing``.

Rules and calendars: admins edit them; admins and supervisors read them. Every change is in
the audit log with each field's old and new value (``GET .../{id}/history``), and a rule's
``version`` counts its edits, so the decision log and the audit log together say exactly which
version of which rule sent a call where. ``POST /api/v1/routing/test`` is the dry run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from pydantic import Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.api.base import (
    body,
    db,
    int_param,
    json_response,
    match_id,
    principal,
    pydantic_errors,
    settings,
)
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import (
    AuditEntry,
    CustomFieldDef,
    LeadList,
    RoutingCalendar,
    RoutingDecision,
    RoutingRule,
    Team,
    User,
)
from crm.permissions import PermissionDenied, Principal
from crm.phones import PhoneError, parse
from crm.schemas import Strict
from cti.routing import rules as r
from cti.routing.service import RoutingService

SERVICE = web.AppKey("routing_service", RoutingService)
RULE = "routing_rule"
CALENDAR = "routing_calendar"


def _service(request: web.Request) -> RoutingService:
    return request.app[SERVICE]


def require_admin(p: Principal) -> None:
    if not p.is_admin:
        raise PermissionDenied("only admins may change call routing")


def require_reader(p: Principal) -> None:
    if not (p.is_admin or p.scope == "team"):
        raise PermissionDenied("only admins and supervisors may see call routing")


# -- rules -----------------------------------------------------------------------------------


def present_rule(rule: RoutingRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "description": rule.description,
        "enabled": rule.enabled,
        "position": rule.position,
        "match": rule.match,
        "conditions": rule.conditions,
        "action": rule.action,
        "version": rule.version,
        "created_at": audit.jsonable(rule.created_at),
        "updated_at": audit.jsonable(rule.updated_at),
    }


def _versioned(rule: RoutingRule) -> dict[str, Any]:
    """What the audit log compares: everything that changes what the rule does."""
    return {
        "name": rule.name,
        "description": rule.description,
        "enabled": rule.enabled,
        "position": rule.position,
        "match": rule.match,
        "conditions": rule.conditions,
        "action": rule.action,
        "version": rule.version,
    }


async def _check_refs(
    session: AsyncSession, conditions: list[Any], action: Any, region: str
) -> dict[str, Any]:
    """Referenced teams, users, calendars, lead lists and custom fields must exist; an
    external number is stored in E.164. Returns the action as it is stored."""
    errors: list[dict[str, str]] = []

    async def missing(model: Any, ids: set[int]) -> set[int]:
        if not ids:
            return set()
        found = set(await session.scalars(select(model.id).where(model.id.in_(sorted(ids)))))
        return ids - found

    users: dict[int, list[str]] = {}
    teams: dict[int, list[str]] = {}
    calendars: dict[int, list[str]] = {}
    lists: dict[int, list[str]] = {}
    keys: dict[str, list[str]] = {}
    for i, c in enumerate(conditions):
        where = f"conditions[{i}]"
        if c.kind in ("owner", "agent_available"):
            for u in c.user_ids:
                users.setdefault(u, []).append(f"{where}.user_ids")
        if c.kind == "owner":
            for t in c.team_ids:
                teams.setdefault(t, []).append(f"{where}.team_ids")
        if c.kind == "agent_available" and c.team_id is not None:
            teams.setdefault(c.team_id, []).append(f"{where}.team_id")
        if c.kind in ("business_hours", "holiday"):
            calendars.setdefault(c.calendar_id, []).append(f"{where}.calendar_id")
        if c.kind == "lead_list":
            for x in c.lead_list_ids:
                lists.setdefault(x, []).append(f"{where}.lead_list_ids")
        if c.kind == "custom_field":
            keys.setdefault(c.key, []).append(f"{where}.key")
    if action.type == "team_queue":
        teams.setdefault(action.team_id, []).append("action.team_id")
    for model, refs, label in (
        (User, users, "user"),
        (Team, teams, "team"),
        (RoutingCalendar, calendars, "calendar"),
        (LeadList, lists, "lead list"),
    ):
        for rid in sorted(await missing(model, set(refs))):
            errors += [{"field": f, "reason": f"no {label} {rid}"} for f in refs[rid]]
    if keys:
        known = set(
            await session.scalars(
                select(CustomFieldDef.key).where(CustomFieldDef.key.in_(sorted(keys)))
            )
        )
        for key in sorted(set(keys) - known):
            errors += [{"field": f, "reason": f"no custom field {key!r}"} for f in keys[key]]
    if action.type == "team_queue" and action.team_id not in await missing(Team, {action.team_id}):
        queue = await session.scalar(select(Team.queue).where(Team.id == action.team_id))
        if not queue:
            errors.append({"field": "action.team_id", "reason": "the team has no queue"})
    stored = action.model_dump(mode="json")
    if action.type == "external":
        try:
            stored["number"] = parse(action.number, region).e164
        except PhoneError as exc:
            errors.append({"field": "action.number", "reason": exc.reason})
    if errors:
        raise ValidationFailed(errors)
    return dict(stored)


async def _ordered(session: AsyncSession) -> list[RoutingRule]:
    return list(
        await session.scalars(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id))
    )


async def _place(session: AsyncSession, rule: RoutingRule, position: int | None) -> None:
    """Put ``rule`` at 1-based ``position`` (None: last) and number all rules 1..n."""
    rules = [x for x in await _ordered(session) if x is not rule]
    index = len(rules) if position is None else position - 1
    rules.insert(max(0, min(index, len(rules))), rule)
    for i, x in enumerate(rules, start=1):
        if x.position != i:
            x.position = i


async def list_rules(request: web.Request) -> web.Response:
    """The routing rules in the order they are tried."""
    require_reader(principal(request))
    async with db(request).session() as s:
        rules = await _ordered(s)
        return json_response({"items": [present_rule(x) for x in rules]})


async def get_rule(request: web.Request) -> web.Response:
    require_reader(principal(request))
    async with db(request).session() as s:
        rule = await s.get(RoutingRule, match_id(request))
        if rule is None:
            raise NotFound("no such routing rule")
        return json_response(present_rule(rule))


async def create_rule(request: web.Request) -> web.Response:
    """Create a rule (admins); ``position`` puts it in the order, default last."""
    p = principal(request)
    require_admin(p)
    data = await body(request, r.RuleIn)
    async with db(request).session() as s:
        action = await _check_refs(s, data.conditions, data.action, settings(request).phone_region)
        rule = RoutingRule(
            name=data.name,
            description=data.description,
            enabled=data.enabled,
            match=data.match,
            conditions=[c.model_dump(mode="json") for c in data.conditions],
            action=action,
            version=1,
        )
        await _place(s, rule, data.position)
        s.add(rule)
        await s.flush()
        audit.record(s, p.user_id, "create", RULE, rule.id, audit.diff({}, _versioned(rule)))
        out = present_rule(rule)
    _service(request).invalidate()
    return json_response(out, status=201)


async def patch_rule(request: web.Request) -> web.Response:
    """Change a rule (admins); every change makes a new version, kept in the audit log."""
    p = principal(request)
    require_admin(p)
    data = await body(request, r.RulePatch)
    given = data.model_fields_set
    for name in ("name", "enabled", "match", "conditions", "action"):
        if name in given and getattr(data, name) is None:
            raise ValidationFailed.one(name, "may not be null")
    async with db(request).session() as s:
        rule = await s.get(RoutingRule, match_id(request))
        if rule is None:
            raise NotFound("no such routing rule")
        before = _versioned(rule)
        conditions = (
            data.conditions
            if data.conditions is not None
            else r.CONDITIONS.validate_python(rule.conditions)
        )
        action = data.action if data.action is not None else r.ACTION.validate_python(rule.action)
        stored_action = await _check_refs(s, conditions, action, settings(request).phone_region)
        if "name" in given:
            rule.name = data.name or rule.name
        if "description" in given:
            rule.description = data.description
        if data.enabled is not None:
            rule.enabled = data.enabled
        if data.match is not None:
            rule.match = data.match
        rule.conditions = [c.model_dump(mode="json") for c in conditions]
        rule.action = stored_action
        if data.position is not None:
            await _place(s, rule, data.position)
        after = _versioned(rule)
        changes = audit.diff(before, after)
        if changes:
            rule.version += 1
            changes = audit.diff(before, _versioned(rule))
            await s.flush()
            audit.record(s, p.user_id, "update", RULE, rule.id, changes)
        out = present_rule(rule)
    _service(request).invalidate()
    return json_response(out)


async def delete_rule(request: web.Request) -> web.Response:
    p = principal(request)
    require_admin(p)
    async with db(request).session() as s:
        rule = await s.get(RoutingRule, match_id(request))
        if rule is None:
            raise NotFound("no such routing rule")
        rid, before = rule.id, _versioned(rule)
        await s.delete(rule)
        await s.flush()
        for i, x in enumerate(await _ordered(s), start=1):
            if x.position != i:
                x.position = i
        audit.record(s, p.user_id, "delete", RULE, rid, audit.diff(before, {}))
    _service(request).invalidate()
    return web.Response(status=204)


async def order_rules(request: web.Request) -> web.Response:
    """Reorder: ``{"ids": [...]}`` lists every rule id in the new order."""
    p = principal(request)
    require_admin(p)
    data = await body(request, r.RuleOrderIn)
    async with db(request).session() as s:
        rules = await _ordered(s)
        have = {x.id: x for x in rules}
        if sorted(data.ids) != sorted(have) or len(set(data.ids)) != len(data.ids):
            raise ValidationFailed.one("ids", "must list every rule id exactly once")
        old = [x.id for x in rules]
        for i, rid in enumerate(data.ids, start=1):
            rule = have[rid]
            if rule.position != i:
                before = _versioned(rule)
                rule.position = i
                rule.version += 1
                audit.record(
                    s, p.user_id, "update", RULE, rid, audit.diff(before, _versioned(rule))
                )
        audit.record(s, p.user_id, "reorder", RULE, None, {"order": [old, list(data.ids)]})
        out = [present_rule(have[i]) for i in data.ids]
    _service(request).invalidate()
    return json_response({"items": out})


async def _history(request: web.Request, entity: str) -> web.Response:
    require_reader(principal(request))
    rid = match_id(request)
    async with db(request).session() as s:
        rows = list(
            await s.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == entity, AuditEntry.entity_id == rid)
                .order_by(AuditEntry.id)
            )
        )
    if not rows:
        raise NotFound(f"no history for {entity} {rid}")
    items = [
        {
            "id": e.id,
            "at": audit.jsonable(e.at),
            "user_id": e.user_id,
            "action": e.action,
            "changes": e.changes,
        }
        for e in rows
    ]
    return json_response({"items": items})


async def rule_history(request: web.Request) -> web.Response:
    """Every version of a rule: who changed what, with the old and the new value."""
    return await _history(request, RULE)


# -- calendars --------------------------------------------------------------------------------


def present_calendar(c: RoutingCalendar) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "hours": {day: [f"{s}-{e}" for s, e in wins] for day, wins in (c.hours or {}).items()},
        "holidays": c.holidays,
        "updated_at": audit.jsonable(c.updated_at),
    }


def _calendar_state(c: RoutingCalendar) -> dict[str, Any]:
    return {"name": c.name, "hours": c.hours, "holidays": c.holidays}


async def list_calendars(request: web.Request) -> web.Response:
    require_reader(principal(request))
    async with db(request).session() as s:
        rows = await s.scalars(select(RoutingCalendar).order_by(RoutingCalendar.name))
        return json_response({"items": [present_calendar(c) for c in rows]})


async def get_calendar(request: web.Request) -> web.Response:
    require_reader(principal(request))
    async with db(request).session() as s:
        cal = await s.get(RoutingCalendar, match_id(request))
        if cal is None:
            raise NotFound("no such calendar")
        return json_response(present_calendar(cal))


async def create_calendar(request: web.Request) -> web.Response:
    """Business hours per weekday and holidays (Gregorian dates, or Jalali ``1405-01-01``)."""
    p = principal(request)
    require_admin(p)
    data = await body(request, r.CalendarIn)
    async with db(request).session() as s:
        if await s.scalar(select(RoutingCalendar.id).where(RoutingCalendar.name == data.name)):
            raise Conflict(f"a calendar named {data.name!r} exists")
        cal = RoutingCalendar(**data.stored())
        s.add(cal)
        await s.flush()
        audit.record(s, p.user_id, "create", CALENDAR, cal.id, audit.diff({}, _calendar_state(cal)))
        out = present_calendar(cal)
    _service(request).invalidate()
    return json_response(out, status=201)


async def patch_calendar(request: web.Request) -> web.Response:
    p = principal(request)
    require_admin(p)
    data = await body(request, r.CalendarPatch)
    async with db(request).session() as s:
        cal = await s.get(RoutingCalendar, match_id(request))
        if cal is None:
            raise NotFound("no such calendar")
        before = _calendar_state(cal)
        current = present_calendar(cal)
        merged = {
            "name": data.name if data.name is not None else cal.name,
            "hours": data.hours if data.hours is not None else current["hours"],
            "holidays": (
                [h.model_dump() for h in data.holidays]
                if data.holidays is not None
                else [{"date": h["date"], "name": h.get("name", "")} for h in cal.holidays]
            ),
        }
        try:
            full = r.CalendarIn.model_validate(merged)
        except ValidationError as exc:
            raise ValidationFailed(pydantic_errors(exc)) from None
        for key, value in full.stored().items():
            setattr(cal, key, value)
        await s.flush()
        changes = audit.diff(before, _calendar_state(cal))
        if changes:
            audit.record(s, p.user_id, "update", CALENDAR, cal.id, changes)
        out = present_calendar(cal)
    _service(request).invalidate()
    return json_response(out)


async def delete_calendar(request: web.Request) -> web.Response:
    p = principal(request)
    require_admin(p)
    cid = match_id(request)
    async with db(request).session() as s:
        cal = await s.get(RoutingCalendar, cid)
        if cal is None:
            raise NotFound("no such calendar")
        users = [
            x.id
            for x in await _ordered(s)
            if any(
                c.get("kind") in ("business_hours", "holiday") and c.get("calendar_id") == cid
                for c in x.conditions
            )
        ]
        if users:
            raise Conflict(f"calendar {cid} is used by rule(s) {users}", rule_ids=users)
        before = _calendar_state(cal)
        await s.delete(cal)
        audit.record(s, p.user_id, "delete", CALENDAR, cid, audit.diff(before, {}))
    _service(request).invalidate()
    return web.Response(status=204)


async def calendar_history(request: web.Request) -> web.Response:
    return await _history(request, CALENDAR)


# -- dry run, decisions, status ----------------------------------------------------------------


class DryRunIn(Strict):
    number: str = Field(default="", max_length=64)  # empty: a withheld number
    did: str = Field(default="", max_length=32)
    # When the call would arrive; without a zone it is local time in the gateway's timezone.
    at: dt.datetime | None = None
    assume_available: list[int] = Field(default_factory=list, max_length=500)


async def test_route(request: web.Request) -> web.Response:
    """Dry run: which rule would route a call from ``number`` to ``did``, and why; nothing
    is dialled or stored."""
    require_reader(principal(request))
    data = await body(request, DryRunIn)
    service = _service(request)
    at = data.at
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=service.tz)
    out = await service.dry_run(data.number, data.did, at, data.assume_available)
    return json_response(out)


def present_decision(d: RoutingDecision) -> dict[str, Any]:
    return {
        "id": d.id,
        "decided_at": audit.jsonable(d.decided_at),
        "call_uid": d.call_uid,
        "channel": d.channel,
        "caller": d.caller,
        "caller_e164": d.caller_e164,
        "did": d.did,
        "entity_type": d.entity_type,
        "entity_id": d.entity_id,
        "rule_id": d.rule_id,
        "rule_version": d.rule_version,
        "route": d.route,
        "target": d.target,
        "agent_id": d.agent_id,
        "reasons": d.reasons,
        "duration_ms": d.duration_ms,
        "fallback": d.fallback,
    }


async def list_decisions(request: web.Request) -> web.Response:
    """Stored decisions, newest first; filters ``call_uid``, ``rule_id``, ``agent_id``,
    ``fallback=true``; ``before=<id>`` pages."""
    require_reader(principal(request))
    stmt = select(RoutingDecision).order_by(RoutingDecision.id.desc())
    q = request.query
    if q.get("call_uid"):
        stmt = stmt.where(RoutingDecision.call_uid == q["call_uid"])
    for key in ("rule_id", "agent_id", "before"):
        if q.get(key):
            try:
                value = int(q[key])
            except ValueError:
                raise ValidationFailed.one(key, "must be an integer") from None
            col = RoutingDecision.id if key == "before" else getattr(RoutingDecision, key)
            stmt = stmt.where(col < value if key == "before" else col == value)
    if q.get("fallback") in ("true", "1"):
        stmt = stmt.where(RoutingDecision.fallback.is_(True))
    limit = int_param(request, "limit", 100)
    async with db(request).session() as s:
        rows = list(await s.scalars(stmt.limit(limit)))
    return json_response(
        {
            "items": [present_decision(d) for d in rows],
            "next_before": rows[-1].id if len(rows) == limit else None,
        }
    )


async def routing_status(request: web.Request) -> web.Response:
    """The FastAGI server and the decision log: listening, sessions, fallbacks."""
    require_reader(principal(request))
    from cti.routing import RUNTIME

    runtime = request.app[RUNTIME]
    service = runtime.service
    server = runtime.server
    async with db(request).session() as s:
        rules = await s.scalar(select(func.count()).select_from(RoutingRule))
    return json_response(
        {
            "agi": {
                "listening": runtime.listening,
                "host": server.host,
                "port": server.port,
                "active_sessions": server.active,
                "counters": dict(server.counters),
                "error": runtime.error,
            },
            "decisions": dict(service.counters),
            "log": {
                "pending": service.writer.pending if service.writer else 0,
                "written": service.writer.written if service.writer else 0,
                "dropped": service.writer.dropped if service.writer else 0,
            },
            "rules": rules,
            "deadline_ms": round(service.deadline * 1000),
            "default_queue": service.default_queue,
        }
    )


def routing_routes() -> list[web.RouteDef]:
    base = "/api/v1/routing"
    return [
        web.get(f"{base}/rules", list_rules),
        web.post(f"{base}/rules", create_rule),
        web.post(f"{base}/rules/order", order_rules),
        web.get(f"{base}/rules/{{id}}", get_rule),
        web.patch(f"{base}/rules/{{id}}", patch_rule),
        web.delete(f"{base}/rules/{{id}}", delete_rule),
        web.get(f"{base}/rules/{{id}}/history", rule_history),
        web.get(f"{base}/calendars", list_calendars),
        web.post(f"{base}/calendars", create_calendar),
        web.get(f"{base}/calendars/{{id}}", get_calendar),
        web.patch(f"{base}/calendars/{{id}}", patch_calendar),
        web.delete(f"{base}/calendars/{{id}}", delete_calendar),
        web.get(f"{base}/calendars/{{id}}/history", calendar_history),
        web.post(f"{base}/test", test_route),
        web.get(f"{base}/decisions", list_decisions),
        web.get(f"{base}/status", routing_status),
    ]
