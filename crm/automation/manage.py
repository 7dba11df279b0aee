"""Editing automation rules (admins), each edit versioned and audited with its changes;
and the reminders a user was sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.automation.rules import TRIGGERS, RuleIn, RulePatch, every_minutes, normalized
from crm.errors import NotFound
from crm.models import Activity, ActivityReminder, AutomationRule, utcnow
from crm.permissions import PermissionDenied, Principal


def require(p: Principal, action: str) -> None:
    """Admins, or roles granted ``automation`` (view / create / edit / delete)."""
    if not (p.is_admin or p.can("automation", action)):
        raise PermissionDenied("automation rules are managed by admins")


def present(rule: AutomationRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "description": rule.description,
        "kind": rule.kind,
        "triggers": list(TRIGGERS.get(rule.kind, ())),
        "enabled": rule.enabled,
        "config": rule.config,
        "version": rule.version,
        "runs": rule.runs,
        "every_minutes": every_minutes(rule.kind, rule.config or {}),
        "last_run_at": audit.jsonable(rule.last_run_at),
        "last_status": rule.last_status,
        "last_detail": rule.last_detail,
        "created_at": audit.jsonable(rule.created_at),
        "updated_at": audit.jsonable(rule.updated_at),
    }


def _snapshot(rule: AutomationRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "description": rule.description,
        "kind": rule.kind,
        "enabled": rule.enabled,
        "config": rule.config,
        "version": rule.version,
    }


async def get_rule(session: AsyncSession, p: Principal, rule_id: int) -> AutomationRule:
    require(p, "view")
    rule = await session.get(AutomationRule, rule_id)
    if rule is None:
        raise NotFound(f"no automation rule {rule_id}")
    return rule


async def list_rules(session: AsyncSession, p: Principal) -> list[AutomationRule]:
    require(p, "view")
    return list(await session.scalars(select(AutomationRule).order_by(AutomationRule.id)))


async def create_rule(session: AsyncSession, p: Principal, data: RuleIn) -> AutomationRule:
    require(p, "create")
    rule = AutomationRule(
        name=data.name,
        description=data.description,
        kind=data.kind,
        enabled=data.enabled,
        config=normalized(data.kind, data.config),
        state={},
        last_detail={},
        version=1,
    )
    session.add(rule)
    await session.flush()
    audit.record(session, p.user_id, "create", "automation_rule", rule.id,
                 audit.diff({}, _snapshot(rule)))  # fmt: skip
    return rule


async def update_rule(
    session: AsyncSession, p: Principal, rule_id: int, data: RulePatch
) -> AutomationRule:
    require(p, "edit")
    rule = await get_rule(session, p, rule_id)
    before = _snapshot(rule)
    fields = data.model_dump(exclude_unset=True)
    if "config" in fields and fields["config"] is not None:
        rule.config = normalized(rule.kind, fields["config"])
    for key in ("name", "description", "enabled"):
        if key in fields and (fields[key] is not None or key == "description"):
            setattr(rule, key, fields[key])
    changes = audit.diff(before, _snapshot(rule))
    if changes:
        rule.version += 1
        changes["version"] = [before["version"], rule.version]
        audit.record(session, p.user_id, "update", "automation_rule", rule.id, changes)
    return rule


async def delete_rule(session: AsyncSession, p: Principal, rule_id: int) -> None:
    require(p, "delete")
    rule = await get_rule(session, p, rule_id)
    before = _snapshot(rule)
    await session.delete(rule)
    audit.record(session, p.user_id, "delete", "automation_rule", rule_id, audit.diff(before, {}))


async def my_reminders(
    session: AsyncSession, p: Principal, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Reminders sent to the user in the last day and not dismissed, newest first."""
    now = now or utcnow()
    rows = await session.execute(
        select(ActivityReminder, Activity)
        .join(Activity, Activity.id == ActivityReminder.activity_id)
        .where(
            ActivityReminder.user_id == p.user_id,
            ActivityReminder.dismissed_at.is_(None),
            ActivityReminder.sent_at >= now - dt.timedelta(days=1),
            Activity.deleted_at.is_(None),
        )
        .order_by(ActivityReminder.sent_at.desc())
        .limit(50)
    )
    return [
        {
            "reminder_id": r.id,
            "activity_id": a.id,
            "kind": a.kind,
            "subject": a.subject,
            "at": audit.jsonable(r.due_at),
            "sent_at": audit.jsonable(r.sent_at),
            "status": a.status,
            "is_callback": a.is_callback,
        }
        for r, a in rows.all()
    ]


async def dismiss(session: AsyncSession, p: Principal, reminder_id: int) -> None:
    row = await session.get(ActivityReminder, reminder_id)
    if row is None or row.user_id != p.user_id:
        raise NotFound(f"no reminder {reminder_id}")
    row.dismissed_at = row.dismissed_at or utcnow()
