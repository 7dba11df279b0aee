"""REST endpoints of automation (``/api/v1/automation/...``, see docs/automation.md)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select

from crm import audit
from crm.api.base import body, db, int_param, json_response, match_id, principal
from crm.automation import manage, returns
from crm.automation.rules import CONFIGS, TRIGGERS, RuleIn, RulePatch
from crm.automation.service import AutomationService
from crm.errors import ValidationFailed
from crm.models import AuditEntry
from crm.schemas import Strict

AUTOMATION = web.AppKey("automation", AutomationService)


class RunIn(Strict):
    user_id: int | None = None  # user_deactivated rules: whose records


class ReturnIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class DecideIn(Strict):
    note: str | None = Field(default=None, max_length=2000)


def _service(request: web.Request) -> AutomationService:
    return request.app[AUTOMATION]


async def kinds(request: web.Request) -> web.Response:
    """The kinds of automation rule, their triggers and config schemas."""
    manage.require(principal(request), "view")
    out = {
        kind: {
            "triggers": list(TRIGGERS[kind]),
            "description": (model.__doc__ or "").strip(),
            "schema": model.model_json_schema(),
        }
        for kind, model in CONFIGS.items()
    }
    return json_response(out)


async def list_rules(request: web.Request) -> web.Response:
    """Automation rules."""
    async with db(request).session() as s:
        rules = await manage.list_rules(s, principal(request))
        return json_response({"items": [manage.present(r) for r in rules]})


async def create_rule(request: web.Request) -> web.Response:
    """Create an automation rule (config validated for its kind)."""
    data = await body(request, RuleIn)
    async with db(request).session() as s:
        rule = await manage.create_rule(s, principal(request), data)
        out = manage.present(rule)
    return json_response(out, status=201)


async def get_rule(request: web.Request) -> web.Response:
    """One automation rule."""
    async with db(request).session() as s:
        return json_response(
            manage.present(await manage.get_rule(s, principal(request), match_id(request)))
        )


async def patch_rule(request: web.Request) -> web.Response:
    """Edit an automation rule (a new version, audited)."""
    data = await body(request, RulePatch)
    async with db(request).session() as s:
        rule = await manage.update_rule(s, principal(request), match_id(request), data)
        out = manage.present(rule)
    return json_response(out)


async def delete_rule(request: web.Request) -> web.Response:
    """Delete an automation rule."""
    async with db(request).session() as s:
        await manage.delete_rule(s, principal(request), match_id(request))
    return web.Response(status=204)


async def run_rule(request: web.Request) -> web.Response:
    """Run a rule now (scheduled kinds; a reassignment rule for ``user_id``)."""
    p = principal(request)
    manage.require(p, "edit")
    rule_id = match_id(request)
    data = await body(request, RunIn) if request.can_read_body else RunIn()
    async with db(request).session() as s:
        rule = await manage.get_rule(s, p, rule_id)
        kind = rule.kind
    event: Any = None
    if kind == "stage_action":
        raise ValidationFailed.one("kind", "stage actions run when a record changes stage")
    if kind == "user_deactivated":
        if data.user_id is None:
            raise ValidationFailed.one("user_id", "whose records to reassign")
        event = {"user_id": data.user_id}
    out = await _service(request).runner.run(rule_id, "manual", event)
    return json_response(out)


async def rule_runs(request: web.Request) -> web.Response:
    """The rule's runs, newest first, as the audit log holds them."""
    limit = int_param(request, "limit", 50, 1, 500)
    async with db(request).session() as s:
        await manage.get_rule(s, principal(request), match_id(request))
        rows = await s.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.entity_type == "automation_rule",
                AuditEntry.entity_id == match_id(request),
                AuditEntry.action == "automation_run",
            )
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
        items = [{"id": e.id, "at": audit.jsonable(e.at), **(e.detail or {})} for e in rows]
    return json_response({"items": items})


async def request_return(request: web.Request) -> web.Response:
    """Return a lead I own (a supervisor approves)."""
    data = await body(request, ReturnIn)
    async with db(request).session() as s:
        a = await returns.request_return(s, principal(request), match_id(request), data.reason)
        out = returns.present(a)
    return json_response(out, status=201)


async def list_returns(request: web.Request) -> web.Response:
    """Lead returns waiting for a decision (supervisors)."""
    status = request.query.get("status", "return_requested")
    if status not in returns.STATUSES:
        raise ValidationFailed.one("status", f"one of {', '.join(returns.STATUSES)}")
    async with db(request).session() as s:
        items = await returns.pending(s, principal(request), status)
    return json_response({"items": items})


async def decide_return(request: web.Request) -> web.Response:
    """Approve or reject a lead return."""
    data = await body(request, DecideIn) if request.can_read_body else DecideIn()
    approve = request.match_info["decision"] == "approve"
    async with db(request).session() as s:
        a = await returns.decide(s, principal(request), match_id(request), approve, data.note)
        out = returns.present(a)
    return json_response(out)


async def my_reminders(request: web.Request) -> web.Response:
    """My reminders of the last day, not dismissed."""
    async with db(request).session() as s:
        items = await manage.my_reminders(s, principal(request))
    return json_response({"items": items})


async def dismiss_reminder(request: web.Request) -> web.Response:
    """Dismiss one of my reminders."""
    async with db(request).session() as s:
        await manage.dismiss(s, principal(request), match_id(request))
    return web.Response(status=204)


def automation_routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/automation/kinds", kinds),
        web.get("/api/v1/automation/rules", list_rules),
        web.post("/api/v1/automation/rules", create_rule),
        web.get("/api/v1/automation/rules/{id}", get_rule),
        web.patch("/api/v1/automation/rules/{id}", patch_rule),
        web.delete("/api/v1/automation/rules/{id}", delete_rule),
        web.post("/api/v1/automation/rules/{id}/run", run_rule),
        web.get("/api/v1/automation/rules/{id}/runs", rule_runs),
        web.post("/api/v1/leads/{id}/return", request_return),
        web.get("/api/v1/automation/returns", list_returns),
        web.post("/api/v1/automation/returns/{id}/{decision:approve|reject}", decide_return),
        web.get("/api/v1/automation/reminders", my_reminders),
        web.post("/api/v1/automation/reminders/{id}/dismiss", dismiss_reminder),
    ]
