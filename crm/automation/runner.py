"""Running one rule: read the facts, ask :mod:`crm.automation.decisions`, write the changes.

Each run is one transaction. Every record a rule changes gets its own audit entry (no user,
``automation_rule_id`` in the detail), and the run itself is written to the audit log
(``automation_run`` on the rule: trigger, kind, version, what it changed, what it skipped).
A failed run is rolled back whole and written to the audit log as failed. A rule whose
event does not concern it (a deal moved to a stage the rule does not watch) did not run.
Reminder sweeps that had nothing to send are not written (one a minute would bury the
log); they are counted on the rule (``runs``, ``last_run_at``, ``last_detail``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.automation import decisions as dec
from crm.automation import rules as R
from crm.automation.mailer import CampaignLauncher
from crm.db import Database
from crm.errors import NotFound, ValidationFailed
from crm.models import (
    Account,
    Activity,
    ActivityReminder,
    AutomationRule,
    Campaign,
    Contact,
    Deal,
    DialerCampaign,
    Lead,
    LeadAssignment,
    Role,
    Segment,
    SegmentMember,
    Stage,
    TeamMember,
    User,
    utcnow,
)
from crm.services import extras
from crm.services.changes import RecordChanged, UserDeactivated

log = logging.getLogger("tamas.automation")

BATCH = 2000  # records one scheduled run handles at most (the next run goes on)
CUSTOMER_MODELS: dict[str, Any] = {"contact": Contact, "account": Account, "lead": Lead}
ACTIVITY_FK: dict[str, Any] = {
    "contact": Activity.contact_id,
    "account": Activity.account_id,
    "lead": Activity.lead_id,
}
CLOSED_LEAD = ("converted", "unqualified")


class Pusher(Protocol):
    def push_to_user(self, user_id: int, frame: Mapping[str, Any]) -> bool: ...


@dataclass
class RunResult:
    affected: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What to do once the run has committed (launch an e-mail campaign...).
    after: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    def detail(self) -> dict[str, Any]:
        return {
            "affected": len(self.affected),
            "records": self.affected[:100],
            "skipped": self.skipped[:100],
            "skipped_count": len(self.skipped),
            "notes": self.notes,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _event_detail(event: Any) -> dict[str, Any] | None:
    if event is None:
        return None
    to_dict = getattr(event, "to_dict", None)
    return to_dict() if callable(to_dict) else dict(event)


class Runner:
    def __init__(
        self,
        db: Database,
        *,
        pusher: Pusher | None = None,
        launcher: CampaignLauncher | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.pusher = pusher
        self.launcher = launcher  # e-mail campaigns (stage actions' template e-mails)
        self.clock = clock

    async def run(
        self,
        rule_id: int,
        trigger: str,
        event: Any = None,
        now: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Run the rule once; returns ``{"status": "ok"|"error"|"not_applicable", ...}``."""
        now = now or self.clock()
        try:
            async with self.db.session() as s:
                rule = await s.get(AutomationRule, rule_id)
                if rule is None:
                    raise NotFound(f"no automation rule {rule_id}")
                config = R.parse_config(rule.kind, rule.config)
                result = await HANDLERS[rule.kind](self, s, rule, config, event, now)
                if result is None:
                    return {"status": "not_applicable", "rule_id": rule_id}
                detail = result.detail()
                rule.runs += 1
                rule.last_status = "ok"
                rule.last_detail = {"at": _iso(now), "trigger": trigger, **detail}
                if trigger != "event":
                    rule.last_run_at = now
                if rule.kind != "reminders" or result.affected:
                    audit.record(
                        s,
                        None,
                        "automation_run",
                        "automation_rule",
                        rule.id,
                        {},
                        status="ok",
                        trigger=trigger,
                        kind=rule.kind,
                        rule=rule.name,
                        version=rule.version,
                        event=_event_detail(event),
                        **detail,
                    )
            for step in result.after:
                try:
                    await step()
                except Exception:
                    log.exception("automation follow-up failed", extra={"rule": rule_id})
            return {"status": "ok", "rule_id": rule_id, "trigger": trigger, **detail}
        except Exception as exc:
            if not isinstance(exc, ValidationFailed | NotFound):
                log.exception("automation rule failed", extra={"rule": rule_id})
            if isinstance(exc, NotFound):
                raise
            error = str(exc)[:500] or type(exc).__name__
            async with self.db.session() as s:
                rule = await s.get(AutomationRule, rule_id)
                if rule is not None:
                    rule.runs += 1
                    rule.last_status = "error"
                    rule.last_detail = {"at": _iso(now), "trigger": trigger, "error": error}
                    if trigger != "event":
                        rule.last_run_at = now
                audit.record(
                    s,
                    None,
                    "automation_run",
                    "automation_rule",
                    rule_id,
                    {},
                    status="error",
                    trigger=trigger,
                    kind=rule.kind if rule else None,
                    event=_event_detail(event),
                    error=error,
                )
            return {"status": "error", "rule_id": rule_id, "trigger": trigger, "error": error}

    # -- shared writes ----------------------------------------------------------------------

    @staticmethod
    def changed(
        s: AsyncSession,
        rule: AutomationRule,
        entity: str,
        rid: int,
        changes: dict[str, list[Any]],
    ) -> None:
        audit.record(
            s, None, "update", entity, rid, changes, automation_rule_id=rule.id, rule=rule.name
        )

    async def active_users(self, s: AsyncSession, ids: list[int] | None = None) -> list[int]:
        stmt = select(User.id).where(User.is_active.is_(True)).order_by(User.id)
        if ids is not None:
            stmt = stmt.where(User.id.in_(ids))
        return list(await s.scalars(stmt))

    async def team_members(self, s: AsyncSession, team_ids: list[int]) -> list[int]:
        if not team_ids:
            return []
        return list(
            await s.scalars(
                select(TeamMember.user_id)
                .join(User, User.id == TeamMember.user_id)
                .where(TeamMember.team_id.in_(team_ids), User.is_active.is_(True))
                .distinct()
                .order_by(TeamMember.user_id)
            )
        )


# -- inactive customers -------------------------------------------------------------------------


async def _last_activity(s: AsyncSession, entity: str) -> Any:
    fk = ACTIVITY_FK[entity]
    return (
        select(fk.label("rid"), func.max(Activity.occurred_at).label("last"))
        .where(fk.is_not(None), Activity.deleted_at.is_(None))
        .group_by(fk)
        .subquery()
    )


async def inactive_customer(
    runner: Runner,
    s: AsyncSession,
    rule: AutomationRule,
    cfg: R.InactiveCustomerConfig,
    event: Any,
    now: dt.datetime,
) -> RunResult:
    model = CUSTOMER_MODELS[cfg.entity]
    cutoff = now - dt.timedelta(days=cfg.days)
    last = await _last_activity(s, cfg.entity)
    stmt = (
        select(model, last.c.last)
        .outerjoin(last, last.c.rid == model.id)
        .where(
            model.deleted_at.is_(None),
            model.merged_into_id.is_(None),
            or_(model.lifecycle_stage.is_(None), model.lifecycle_stage != cfg.set_stage),
            model.created_at <= cutoff,
            or_(last.c.last.is_(None), last.c.last <= cutoff),
        )
        .order_by(model.id)
        .limit(BATCH)
    )
    if cfg.stages:
        stmt = stmt.where(model.lifecycle_stage.in_(cfg.stages))
    result = RunResult()
    flagged: list[int] = []
    for obj, last_at in (await s.execute(stmt)).all():
        if not dec.inactive(last_at, obj.created_at, now, cfg.days):
            continue
        if not dec.flag_stage(obj.lifecycle_stage, cfg.stages, cfg.set_stage):
            continue
        old = obj.lifecycle_stage
        obj.lifecycle_stage = cfg.set_stage
        changes: dict[str, list[Any]] = {"lifecycle_stage": [old, cfg.set_stage]}
        if cfg.add_tag:
            tags = (await extras.tags_of(s, cfg.entity, [obj.id])).get(obj.id, [])
            if cfg.add_tag not in tags:
                await extras.set_tags(s, cfg.entity, obj.id, [*tags, cfg.add_tag], True)
                changes["tags"] = [tags, sorted([*tags, cfg.add_tag])]
        Runner.changed(s, rule, cfg.entity, obj.id, changes)
        flagged.append(obj.id)
        result.affected.append(
            {
                "entity": cfg.entity,
                "id": obj.id,
                "from": old,
                "to": cfg.set_stage,
                "last_activity": _iso(last_at),
            }
        )
    if flagged and cfg.win_back_campaign_id is not None:
        await _win_back(s, rule, cfg.win_back_campaign_id, cfg.entity, flagged, now, result)
    return result


async def _win_back(
    s: AsyncSession,
    rule: AutomationRule,
    campaign_id: int,
    entity: str,
    ids: list[int],
    now: dt.datetime,
    result: RunResult,
) -> None:
    """Put the flagged customers into the win-back campaign: its static segment gets them
    (a dynamic segment's own filter decides), and a call campaign's list is extended."""
    campaign = await s.get(Campaign, campaign_id)
    if campaign is None or campaign.deleted_at is not None:
        result.notes.append(f"win-back campaign {campaign_id} does not exist")
        return
    segment = await s.get(Segment, campaign.segment_id) if campaign.segment_id else None
    if segment is None:
        result.notes.append(f"win-back campaign {campaign_id} has no segment to add to")
        return
    if segment.entity_type != entity:
        result.notes.append(f"win-back segment {segment.id} holds {segment.entity_type}s")
        return
    if segment.kind != "static":
        result.notes.append(f"win-back segment {segment.id} is dynamic: its filter decides")
    else:
        present = set(
            await s.scalars(
                select(SegmentMember.entity_id).where(
                    SegmentMember.segment_id == segment.id, SegmentMember.entity_id.in_(ids)
                )
            )
        )
        fresh = [i for i in ids if i not in present]
        s.add_all(SegmentMember(segment_id=segment.id, entity_id=i) for i in fresh)
        await s.flush()
        result.notes.append(f"{len(fresh)} added to win-back campaign {campaign_id}")
        audit.record(
            s,
            None,
            "segment_members_added",
            "segment",
            segment.id,
            {},
            ids=fresh,
            automation_rule_id=rule.id,
        )
    dialer = await s.get(DialerCampaign, campaign_id)
    if dialer is not None and dialer.list_built_at is not None:
        from cti.dialer.calllist import build

        report = await build(s, campaign, now)
        result.notes.append(f"call list of campaign {campaign_id}: {report.added} added")


# -- stale prospects ----------------------------------------------------------------------------


async def stale_prospect(
    runner: Runner,
    s: AsyncSession,
    rule: AutomationRule,
    cfg: R.StaleProspectConfig,
    event: Any,
    now: dt.datetime,
) -> RunResult:
    model = CUSTOMER_MODELS[cfg.entity]
    status_col = model.status if cfg.entity == "lead" else model.lifecycle_stage
    cutoff = now - dt.timedelta(days=cfg.days)
    last = await _last_activity(s, cfg.entity)
    rows = (
        await s.execute(
            select(model, last.c.last)
            .outerjoin(last, last.c.rid == model.id)
            .where(
                model.owner_id.is_not(None),
                model.deleted_at.is_(None),
                model.merged_into_id.is_(None),
                status_col.in_(cfg.open_statuses()),
                model.created_at <= cutoff,
                or_(last.c.last.is_(None), last.c.last <= cutoff),
            )
            .order_by(model.id)
            .limit(BATCH)
        )
    ).all()
    result = RunResult()
    for obj, last_at in rows:
        if not dec.inactive(last_at, obj.created_at, now, cfg.days):
            continue
        old = obj.owner_id
        obj.owner_id = None
        Runner.changed(s, rule, cfg.entity, obj.id, {"owner_id": [old, None]})
        result.affected.append(
            {"entity": cfg.entity, "id": obj.id, "owner_was": old, "last_activity": _iso(last_at)}
        )
    return result


# -- a user deactivated ----------------------------------------------------------------------


async def user_deactivated(
    runner: Runner,
    s: AsyncSession,
    rule: AutomationRule,
    cfg: R.UserDeactivatedConfig,
    event: Any,
    now: dt.datetime,
) -> RunResult | None:
    if isinstance(event, UserDeactivated):
        uid = event.user_id
    elif isinstance(event, Mapping) and isinstance(event.get("user_id"), int):
        uid = int(event["user_id"])  # a manual run names the user
    else:
        return None
    result = RunResult()
    user = await s.get(User, uid)
    if user is None:
        raise ValidationFailed.one("user_id", f"no user {uid}")
    if user.is_active:
        result.notes.append(f"user {uid} is active again: nothing reassigned")
        return result
    if cfg.to_user_id is not None:
        targets = await runner.active_users(s, [cfg.to_user_id])
    elif cfg.team_id is not None:
        targets = await runner.team_members(s, [cfg.team_id])
    else:
        own_teams = list(
            await s.scalars(select(TeamMember.team_id).where(TeamMember.user_id == uid))
        )
        targets = await runner.team_members(s, own_teams)
    targets = [t for t in targets if t != uid]
    if not targets:
        result.notes.append("nobody active to reassign to")
        return result
    items: list[tuple[str, int]] = []
    for entity in cfg.entities:
        if entity in CUSTOMER_MODELS:
            model = CUSTOMER_MODELS[entity]
            ids = await s.scalars(
                select(model.id)
                .where(model.owner_id == uid, model.deleted_at.is_(None))
                .order_by(model.id)
            )
        elif entity == "deal":
            ids = await s.scalars(
                select(Deal.id)
                .where(Deal.owner_id == uid, Deal.status == "open", Deal.deleted_at.is_(None))
                .order_by(Deal.id)
            )
        else:
            ids = await s.scalars(
                select(Activity.id)
                .where(
                    Activity.kind == "task",
                    Activity.status == "open",
                    Activity.deleted_at.is_(None),
                    or_(
                        Activity.assignee_id == uid,
                        and_(Activity.assignee_id.is_(None), Activity.owner_id == uid),
                    ),
                )
                .order_by(Activity.id)
            )
        items += [(entity, i) for i in ids]
    plan, position = dec.spread(items, targets, int((rule.state or {}).get("position", 0)))
    models: dict[str, Any] = {**CUSTOMER_MODELS, "deal": Deal, "task": Activity}
    for etype, rid, to in plan:
        obj = await s.get(models[etype], rid)
        if obj is None:
            continue
        changes: dict[str, list[Any]] = {}
        if etype == "task":
            if obj.assignee_id in (uid, None):
                changes["assignee_id"] = [obj.assignee_id, to]
                obj.assignee_id = to
            if obj.owner_id == uid:
                changes["owner_id"] = [uid, to]
                obj.owner_id = to
        else:
            changes["owner_id"] = [obj.owner_id, to]
            obj.owner_id = to
        Runner.changed(s, rule, "activity" if etype == "task" else etype, rid, changes)
        result.affected.append({"etype": etype, "id": rid, "from": uid, "to": to})
    rule.state = {**(rule.state or {}), "position": position}
    return result


# -- stage entry / exit ---------------------------------------------------------------------------


async def _stage_names(s: AsyncSession, ids: list[Any]) -> dict[int, tuple[str, int]]:
    wanted = [i for i in ids if isinstance(i, int)]
    if not wanted:
        return {}
    rows = await s.execute(
        select(Stage.id, Stage.name, Stage.pipeline_id).where(Stage.id.in_(wanted))
    )
    return {sid: (name, pid) for sid, name, pid in rows.all()}


async def stage_action(
    runner: Runner,
    s: AsyncSession,
    rule: AutomationRule,
    cfg: R.StageActionConfig,
    event: Any,
    now: dt.datetime,
) -> RunResult | None:
    if not isinstance(event, RecordChanged) or event.entity != cfg.entity:
        return None
    if cfg.entity == "lead":
        change = dec.stage_change(event.changes, "status")
        if change is None:
            return None
        old_name, new_name = change[0], change[1]
    else:
        change = dec.stage_change(event.changes, "stage_id")
        if change is None:
            return None
        names = await _stage_names(s, [change[0], change[1]])
        old = names.get(change[0]) if isinstance(change[0], int) else None
        new = names.get(change[1]) if isinstance(change[1], int) else None
        if cfg.pipeline_id is not None:
            pipelines = {x[1] for x in (old, new) if x is not None}
            if cfg.pipeline_id not in pipelines:
                return None
        old_name = old[0] if old else None
        new_name = new[0] if new else None
    old_s = str(old_name) if old_name is not None else None
    new_s = str(new_name) if new_name is not None else None
    if not dec.stage_fires(cfg.on, cfg.stage, old_s, new_s):
        return None
    model: Any = Lead if cfg.entity == "lead" else Deal
    obj = await s.get(model, event.entity_id)
    if obj is None or obj.deleted_at is not None:
        return None
    result = RunResult()
    result.notes.append(f"{cfg.entity} {obj.id} {cfg.on} {cfg.stage!r} ({old_s} -> {new_s})")
    for action in cfg.actions:
        if isinstance(action, R.AssignAction):
            await _assign(runner, s, rule, cfg.entity, obj, action, result)
        elif isinstance(action, R.TaskAction):
            await _task(s, rule, cfg.entity, obj, action, now, result)
        else:
            await _email(runner, s, cfg.entity, obj, action, rule, result)
    return result


async def _candidates(
    runner: Runner, s: AsyncSession, skill: str | None, role: str | None, team_id: int | None
) -> list[int]:
    stmt = select(User).where(User.is_active.is_(True)).order_by(User.id)
    if role is not None:
        stmt = stmt.join(Role, Role.id == User.role_id).where(Role.name == role)
    if team_id is not None:
        stmt = stmt.where(
            User.id.in_(select(TeamMember.user_id).where(TeamMember.team_id == team_id))
        )
    users = list((await s.scalars(stmt)).unique())
    if skill is not None:
        wanted = skill.casefold()
        users = [u for u in users if any(str(x).casefold() == wanted for x in u.skills or [])]
    return [u.id for u in users]


async def _loads(s: AsyncSession, entity: str, users: list[int]) -> dict[int, int]:
    if not users:
        return {}
    if entity == "deal":
        stmt = select(Deal.owner_id, func.count()).where(
            Deal.owner_id.in_(users), Deal.status == "open", Deal.deleted_at.is_(None)
        )
        stmt = stmt.group_by(Deal.owner_id)
    else:
        stmt = select(Lead.owner_id, func.count()).where(
            Lead.owner_id.in_(users), Lead.status.not_in(CLOSED_LEAD), Lead.deleted_at.is_(None)
        )
        stmt = stmt.group_by(Lead.owner_id)
    return {u: n for u, n in (await s.execute(stmt)).all() if u is not None}


async def _assign(
    runner: Runner,
    s: AsyncSession,
    rule: AutomationRule,
    entity: str,
    obj: Any,
    action: R.AssignAction,
    result: RunResult,
) -> None:
    users = await _candidates(runner, s, action.skill, action.role, action.team_id)
    loads = await _loads(s, entity, users) if action.strategy == "least_loaded" else {}
    state = dict(rule.state or {})
    pick = dec.pick_user(
        users, strategy=action.strategy, position=int(state.get("position", 0)), loads=loads
    )
    if pick.user_id is None:
        result.skipped.append({"entity": entity, "id": obj.id, "reason": "nobody matches"})
        return
    rule.state = {**state, "position": pick.position}
    if obj.owner_id != pick.user_id:
        Runner.changed(s, rule, entity, obj.id, {"owner_id": [obj.owner_id, pick.user_id]})
        obj.owner_id = pick.user_id
    result.affected.append({"entity": entity, "id": obj.id, "action": "assign", "to": pick.user_id})


async def _task(
    s: AsyncSession,
    rule: AutomationRule,
    entity: str,
    obj: Any,
    action: R.TaskAction,
    now: dt.datetime,
    result: RunResult,
) -> None:
    if action.assign_to == "owner":
        who = obj.owner_id
    elif action.assign_to == "unassigned":
        who = None
    else:
        who = action.assign_to if await s.get(User, action.assign_to) is not None else None
    links: dict[str, Any] = {f"{entity}_id": obj.id}
    if entity == "deal":
        links.update(contact_id=obj.contact_id, account_id=obj.account_id)
    task = Activity(
        kind="task",
        subject=action.subject,
        body=action.body,
        status="open",
        priority=action.priority,
        due_at=now + dt.timedelta(hours=action.due_in_hours),
        assignee_id=who,
        owner_id=who,
        team_id=getattr(obj, "team_id", None),
        occurred_at=now,
        details={"automation_rule_id": rule.id},
        **links,
    )
    s.add(task)
    await s.flush()
    audit.record(
        s,
        None,
        "create",
        "activity",
        task.id,
        audit.diff(
            {}, {"kind": "task", "subject": task.subject, "assignee_id": who, "due_at": task.due_at}
        ),
        automation_rule_id=rule.id,
        rule=rule.name,
    )
    result.affected.append(
        {
            "entity": entity,
            "id": obj.id,
            "action": "create_task",
            "task_id": task.id,
            "assignee_id": who,
        }
    )


async def _email(
    runner: Runner,
    s: AsyncSession,
    entity: str,
    obj: Any,
    action: R.EmailAction,
    rule: AutomationRule,
    result: RunResult,
) -> None:
    """The record joins the e-mail campaign's static segment; the campaign is launched
    once the run has committed (it plans only new members: opt-outs and suppressed
    addresses are skipped there)."""
    if entity == "lead":
        target: tuple[str, int] | None = ("lead", obj.id)
    elif obj.contact_id:
        target = ("contact", obj.contact_id)
    elif obj.account_id:
        target = ("account", obj.account_id)
    else:
        target = None
    item: dict[str, Any] = {
        "entity": entity,
        "id": obj.id,
        "action": "send_email",
        "campaign_id": action.campaign_id,
        "to": list(target) if target else None,
    }
    campaign = await s.get(Campaign, action.campaign_id)
    segment = (
        await s.get(Segment, campaign.segment_id) if campaign and campaign.segment_id else None
    )
    reason = None
    if target is None:
        reason = "no contact to write to"
    elif runner.launcher is None:
        reason = "no e-mail sender is configured"
    elif campaign is None or campaign.deleted_at is not None or campaign.channel != "email":
        reason = f"no e-mail campaign {action.campaign_id}"
    elif segment is None or segment.kind != "static" or segment.entity_type != target[0]:
        reason = f"campaign {action.campaign_id} needs a static segment of {target[0]}s"
    if reason is not None or target is None:
        result.skipped.append({**item, "status": f"skipped: {reason}"})
        return
    assert segment is not None
    member = await s.get(SegmentMember, (segment.id, target[1]))
    if member is None:
        s.add(SegmentMember(segment_id=segment.id, entity_id=target[1]))
        await s.flush()
    launcher = runner.launcher
    campaign_id = action.campaign_id

    async def launch() -> None:
        assert launcher is not None
        await launcher.launch(campaign_id, None)

    result.after.append(launch)
    result.affected.append({**item, "status": "queued"})


# -- lead assignment ----------------------------------------------------------------------------


def _wants_assignment(event: Any) -> bool:
    if not isinstance(event, RecordChanged) or event.entity != "lead":
        return False
    owner = event.changes.get("owner_id")
    if event.action == "create":
        return owner is None or owner[-1] is None
    return owner is not None and owner[-1] is None


async def lead_assignment(
    runner: Runner,
    s: AsyncSession,
    rule: AutomationRule,
    cfg: R.LeadAssignmentConfig,
    event: Any,
    now: dt.datetime,
) -> RunResult | None:
    open_leads = select(Lead).where(
        Lead.owner_id.is_(None),
        Lead.deleted_at.is_(None),
        Lead.merged_into_id.is_(None),
        Lead.status.not_in(CLOSED_LEAD),
    )
    if cfg.sources:
        open_leads = open_leads.where(Lead.source.in_(cfg.sources))
    if cfg.lead_list_id is not None:
        open_leads = open_leads.where(Lead.lead_list_id == cfg.lead_list_id)
    if event is not None:
        if not _wants_assignment(event):
            return None
        open_leads = open_leads.where(Lead.id == event.entity_id)
    leads = list(await s.scalars(open_leads.order_by(Lead.created_at, Lead.id).limit(BATCH)))
    if event is not None and not leads:
        return None  # not a lead this rule assigns (source, list), or someone took it
    if cfg.user_ids:
        users = await runner.active_users(s, cfg.user_ids)
        users = [u for u in cfg.user_ids if u in users]  # the order the admin gave
    else:
        users = await runner.team_members(s, [cfg.team_id] if cfg.team_id else [])
    if cfg.skill is not None:
        with_skill = set(await _candidates(runner, s, cfg.skill, None, None))
        users = [u for u in users if u in with_skill]
    result = RunResult()
    if not leads:
        return result
    if not users:
        result.notes.append("nobody to assign leads to")
        result.skipped += [{"lead": lead.id, "reason": "nobody to assign to"} for lead in leads]
        return result
    hour, day = await _assignment_counts(s, users, now)
    loads = await _loads(s, "lead", users) if cfg.strategy == "least_loaded" else {}
    returned = await _returned_by(s, [lead.id for lead in leads])
    state = dict(rule.state or {})
    position = int(state.get("position", 0))
    for lead in leads:
        pick = dec.pick_user(
            users,
            strategy=cfg.strategy,
            position=position,
            loads=loads,
            last_hour=hour,
            last_day=day,
            cap_per_hour=cfg.cap_per_hour,
            cap_per_day=cfg.cap_per_day,
            exclude=returned.get(lead.id, ()),
        )
        if pick.user_id is None:
            result.skipped.append({"lead": lead.id, "reason": "every user is at a cap"})
            continue
        position = pick.position
        uid = pick.user_id
        lead.owner_id = uid
        s.add(LeadAssignment(lead_id=lead.id, user_id=uid, rule_id=rule.id, assigned_at=now))
        Runner.changed(s, rule, "lead", lead.id, {"owner_id": [None, uid]})
        hour[uid] = hour.get(uid, 0) + 1
        day[uid] = day.get(uid, 0) + 1
        loads[uid] = loads.get(uid, 0) + 1
        result.affected.append({"entity": "lead", "id": lead.id, "to": uid})
    rule.state = {**state, "position": position}
    await s.flush()
    return result


async def _assignment_counts(
    s: AsyncSession, users: list[int], now: dt.datetime
) -> tuple[dict[int, int], dict[int, int]]:
    """Leads given to each user in the last hour and day (approved returns do not count)."""
    rows = await s.execute(
        select(LeadAssignment.user_id, LeadAssignment.assigned_at).where(
            LeadAssignment.user_id.in_(users),
            LeadAssignment.assigned_at > now - dt.timedelta(days=1),
            LeadAssignment.status != "returned",
        )
    )
    hour: dict[int, int] = {}
    day: dict[int, int] = {}
    for uid, at in rows.all():
        day[uid] = day.get(uid, 0) + 1
        if at > now - dt.timedelta(hours=1):
            hour[uid] = hour.get(uid, 0) + 1
    return hour, day


async def _returned_by(s: AsyncSession, lead_ids: list[int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    if not lead_ids:
        return out
    rows = await s.execute(
        select(LeadAssignment.lead_id, LeadAssignment.user_id).where(
            LeadAssignment.lead_id.in_(lead_ids), LeadAssignment.status == "returned"
        )
    )
    for lid, uid in rows.all():
        out.setdefault(lid, set()).add(uid)
    return out


# -- reminders -----------------------------------------------------------------------------------


async def _record_of(s: AsyncSession, a: Activity) -> dict[str, Any] | None:
    for etype, rid, model in (
        ("contact", a.contact_id, Contact),
        ("lead", a.lead_id, Lead),
        ("account", a.account_id, Account),
        ("deal", a.deal_id, Deal),
    ):
        if rid:
            obj = await s.get(model, rid)
            if obj is None:
                continue
            name = (
                getattr(obj, "full_name", None)
                or getattr(obj, "name", None)
                or getattr(obj, "title", "")
            )
            return {"type": etype, "id": rid, "name": name, "url": f"/app#/{etype}/{rid}"}
    return None


async def reminders(
    runner: Runner,
    s: AsyncSession,
    rule: AutomationRule,
    cfg: R.RemindersConfig,
    event: Any,
    now: dt.datetime,
) -> RunResult:
    grace = dt.timedelta(minutes=cfg.overdue_grace_minutes)
    tasks = list(
        await s.scalars(
            select(Activity).where(
                Activity.kind == "task",
                Activity.status == "open",
                Activity.deleted_at.is_(None),
                Activity.due_at.is_not(None),
                Activity.due_at >= now - grace,
                Activity.due_at <= now + dt.timedelta(minutes=cfg.task_minutes_before),
            )
        )
    )
    meetings = list(
        await s.scalars(
            select(Activity).where(
                Activity.kind == "meeting",
                or_(Activity.status.is_(None), Activity.status != "cancelled"),
                Activity.deleted_at.is_(None),
                Activity.starts_at.is_not(None),
                Activity.starts_at >= now - grace,
                Activity.starts_at <= now + dt.timedelta(minutes=cfg.meeting_minutes_before),
            )
        )
    )
    by_id = {a.id: a for a in [*tasks, *meetings]}
    dues: list[dec.Due] = []
    for a in tasks:
        who = a.assignee_id or a.owner_id
        if who is not None and a.due_at is not None:
            dues.append(dec.Due(a.id, who, a.due_at, "task"))
    for a in meetings:
        if a.owner_id is not None and a.starts_at is not None:
            dues.append(dec.Due(a.id, a.owner_id, a.starts_at, "meeting"))
    sent: list[tuple[int, int, dt.datetime]] = []
    if by_id:
        sent = [
            (aid, uid, at)
            for aid, uid, at in (
                await s.execute(
                    select(
                        ActivityReminder.activity_id,
                        ActivityReminder.user_id,
                        ActivityReminder.due_at,
                    ).where(ActivityReminder.activity_id.in_(sorted(by_id)))
                )
            ).all()
        ]
    todo = dec.reminders_due(
        dues,
        now,
        {"task": cfg.task_minutes_before, "meeting": cfg.meeting_minutes_before},
        cfg.overdue_grace_minutes,
        sent,
    )
    result = RunResult()
    for d in todo:
        a = by_id[d.activity_id]
        row = ActivityReminder(
            activity_id=d.activity_id, user_id=d.user_id, due_at=d.at, sent_at=now
        )
        s.add(row)
        await s.flush()
        frame = {
            "type": "reminder",
            "reminder_id": row.id,
            "activity_id": a.id,
            "kind": d.kind,
            "subject": a.subject,
            "at": _iso(d.at),
            "minutes": round((d.at - now).total_seconds() / 60),
            "is_callback": bool(a.is_callback),
            "priority": a.priority,
            "location": a.location,
            "record": await _record_of(s, a),
        }
        pushed = runner.pusher.push_to_user(d.user_id, frame) if runner.pusher else False
        item = {"activity_id": a.id, "kind": d.kind, "user_id": d.user_id, "at": _iso(d.at)}
        if pushed:
            result.affected.append(item)
        else:
            await s.delete(row)  # not sent: the next sweep tries again while it is due
            await s.flush()
            result.skipped.append({**item, "reason": "user not connected"})
    return result


HANDLERS: dict[str, Callable[..., Awaitable[RunResult | None]]] = {
    "inactive_customer": inactive_customer,
    "stale_prospect": stale_prospect,
    "user_deactivated": user_deactivated,
    "stage_action": stage_action,
    "lead_assignment": lead_assignment,
    "reminders": reminders,
}
