"""Automation rules end to end, in the running gateway: each kind of rule on its trigger
(a schedule, a record change, a user deactivated), every run in the audit log, rules edited
by admins only and validated; lead caps and returns; reminders pushed to the desktop."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select, update

from crm.automation import AUTOMATION, runner
from crm.models import (
    Account,
    Activity,
    AuditEntry,
    Campaign,
    Contact,
    Deal,
    Lead,
    LeadAssignment,
    Segment,
    SegmentMember,
    Stage,
    User,
)
from crm.schemas import ActivityIn, ContactIn, DealIn, LeadIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from tests.crm_fixtures import make_actor, make_pipeline
from tests.waiting import eventually, next_frame

NOW = dt.datetime.now(dt.UTC)


class World:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.db = api.db
        self.headers: dict[str, dict[str, str]] = {}
        self.actors: dict[str, Any] = {}

    @property
    def service(self) -> Any:
        return self.api.client.app[AUTOMATION]

    async def actor(self, name: str, role: str = "agent", **kw: Any) -> int:
        actor = await make_actor(self.db, name, role, **kw)
        self.actors[name] = actor
        self.headers[name] = await self.api.login(name, actor.password)
        return int(actor.user.id)

    async def rule(self, kind: str, config: dict[str, Any], name: str = "") -> dict[str, Any]:
        return await self.api.call(
            "POST",
            "/api/v1/automation/rules",
            self.headers["admin"],
            expect=201,
            json={"name": name or kind, "kind": kind, "config": config},
        )

    async def run(self, rule_id: int, **body: Any) -> dict[str, Any]:
        return await self.api.call(
            "POST", f"/api/v1/automation/rules/{rule_id}/run", self.headers["admin"], json=body
        )

    async def create(self, entity: str, data: Any, by: str = "admin") -> int:
        async with self.db.session() as s:
            obj = await records.create(s, self.actors[by].principal, SPECS[entity], data, "IR")
            return int(obj.id)

    async def age(self, model: Any, rid: int, days: float) -> None:
        """Pretend the record was created ``days`` ago."""
        async with self.db.session() as s:
            await s.execute(
                update(model)
                .where(model.id == rid)
                .values(created_at=NOW - dt.timedelta(days=days))
            )

    async def get(self, model: Any, rid: int) -> Any:
        async with self.db.session() as s:
            return await s.get(model, rid)

    async def runs(self, rule_id: int) -> list[dict[str, Any]]:
        out = await self.api.call(
            "GET", f"/api/v1/automation/rules/{rule_id}/runs", self.headers["admin"]
        )
        return list(out["items"])

    async def audit_of(self, entity: str, rid: int) -> list[AuditEntry]:
        async with self.db.session() as s:
            return list(
                await s.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.entity_type == entity, AuditEntry.entity_id == rid)
                    .order_by(AuditEntry.id)
                )
            )


@pytest.fixture
async def world(api):
    w = World(api)
    await w.actor("admin", "admin")
    return w


# -- rules as data -----------------------------------------------------------------------------


async def test_rules_are_edited_by_admins_validated_versioned_and_audited(world):
    api = world.api
    await world.actor("sara")
    body = {"name": "Win back", "kind": "inactive_customer", "config": {"days": 180}}
    await api.call("POST", "/api/v1/automation/rules", world.headers["sara"], expect=403, json=body)
    bad = await api.call(
        "POST",
        "/api/v1/automation/rules",
        world.headers["admin"],
        expect=422,
        json={**body, "config": {"days": -1}},
    )
    assert bad["errors"][0]["field"] == "config.days"
    rule = await world.rule("inactive_customer", {"days": 180})
    assert rule["config"]["set_stage"] == "former" and rule["triggers"] == ["schedule"]
    assert rule["version"] == 1 and rule["every_minutes"] == 1440
    patched = await api.call(
        "PATCH",
        f"/api/v1/automation/rules/{rule['id']}",
        world.headers["admin"],
        json={"config": {"days": 90, "set_stage": "lost"}, "enabled": False},
    )
    assert patched["version"] == 2 and patched["config"]["days"] == 90 and not patched["enabled"]
    await api.call(
        "PATCH",
        f"/api/v1/automation/rules/{rule['id']}",
        world.headers["admin"],
        expect=422,
        json={"config": {"days": "often"}},
    )
    history = await world.audit_of("automation_rule", rule["id"])
    assert [e.action for e in history] == ["create", "update"]
    assert history[1].changes["version"] == [1, 2]
    assert history[1].changes["enabled"] == [True, False]
    kinds = await api.call("GET", "/api/v1/automation/kinds", world.headers["admin"])
    assert set(kinds) == {
        "inactive_customer",
        "stale_prospect",
        "user_deactivated",
        "stage_action",
        "lead_assignment",
        "reminders",
    }
    await api.call(
        "DELETE", f"/api/v1/automation/rules/{rule['id']}", world.headers["admin"], expect=204
    )


# -- inactive customers ------------------------------------------------------------------------


async def test_inactive_customers_are_flagged_former_and_enter_the_win_back_campaign(world):
    ids = {}
    for name in ("Quiet", "Busy", "Fresh", "Lead-stage"):
        stage = "lead" if name == "Lead-stage" else "customer"
        ids[name] = await world.create("contact", ContactIn(first_name=name, lifecycle_stage=stage))
    for name in ("Quiet", "Busy", "Lead-stage"):
        await world.age(Contact, ids[name], 400)
    await world.age(Contact, ids["Fresh"], 20)
    # Busy had a call last month; Quiet's last note is from a year ago.
    await world.create(
        "activity",
        ActivityIn(
            kind="note",
            subject="old",
            contact_id=ids["Quiet"],
            occurred_at=NOW - dt.timedelta(days=365),
        ),
    )
    await world.create(
        "activity",
        ActivityIn(
            kind="call",
            subject="recent",
            contact_id=ids["Busy"],
            occurred_at=NOW - dt.timedelta(days=30),
        ),
    )
    async with world.db.session() as s:
        segment = Segment(name="Win back", entity_type="contact", kind="static", filter={})
        s.add(segment)
        await s.flush()
        campaign = Campaign(name="Come back", channel="email", segment_id=segment.id)
        s.add(campaign)
        await s.flush()
        segment_id, campaign_id = segment.id, campaign.id
    rule = await world.rule(
        "inactive_customer",
        {"days": 180, "add_tag": "lost-customer", "win_back_campaign_id": campaign_id},
    )
    out = await world.run(rule["id"])
    assert out["status"] == "ok" and out["affected"] == 1
    quiet = await world.get(Contact, ids["Quiet"])
    assert quiet.lifecycle_stage == "former"
    for name in ("Busy", "Fresh"):
        assert (await world.get(Contact, ids[name])).lifecycle_stage == "customer"
    assert (await world.get(Contact, ids["Lead-stage"])).lifecycle_stage == "lead"
    contact = await world.api.call(
        "GET", f"/api/v1/contacts/{ids['Quiet']}", world.headers["admin"]
    )
    assert contact["tags"] == ["lost-customer"]
    async with world.db.session() as s:
        members = list(
            await s.scalars(
                select(SegmentMember.entity_id).where(SegmentMember.segment_id == segment_id)
            )
        )
    assert members == [ids["Quiet"]]
    # The change is audited with the rule that made it, and the run itself too.
    change = (await world.audit_of("contact", ids["Quiet"]))[-1]
    assert change.user_id is None and change.detail["automation_rule_id"] == rule["id"]
    assert change.changes["lifecycle_stage"] == ["customer", "former"]
    runs = await world.runs(rule["id"])
    assert runs[0]["status"] == "ok" and runs[0]["trigger"] == "manual"
    assert runs[0]["records"][0]["id"] == ids["Quiet"]
    # Running again finds nothing new, and says so in the audit log.
    again = await world.run(rule["id"])
    assert again["affected"] == 0 and len(await world.runs(rule["id"])) == 2


async def test_accounts_can_be_watched_too(world):
    async with world.db.session() as s:
        acme = Account(name="Acme", lifecycle_stage="customer")
        s.add(acme)
        await s.flush()
        acme_id = acme.id
    await world.age(Account, acme_id, 100)
    rule = await world.rule(
        "inactive_customer", {"entity": "account", "days": 90, "set_stage": "lost"}
    )
    assert (await world.run(rule["id"]))["affected"] == 1
    assert (await world.get(Account, acme_id)).lifecycle_stage == "lost"


# -- stale prospects ---------------------------------------------------------------------------


async def test_prospects_without_activity_for_90_days_are_released_to_the_pool(world):
    sara = await world.actor("sara")
    stale = await world.create("lead", LeadIn(first_name="Old", owner_id=sara, status="contacted"))
    touched = await world.create("lead", LeadIn(first_name="Warm", owner_id=sara))
    won = await world.create("lead", LeadIn(first_name="Bad", owner_id=sara, status="unqualified"))
    for rid in (stale, touched, won):
        await world.age(Lead, rid, 120)
    await world.create(
        "activity",
        ActivityIn(
            kind="call", subject="chat", lead_id=touched, occurred_at=NOW - dt.timedelta(days=10)
        ),
    )
    rule = await world.rule("stale_prospect", {"days": 90})
    out = await world.run(rule["id"])
    assert [r["id"] for r in out["records"]] == [stale]
    assert (await world.get(Lead, stale)).owner_id is None
    assert (await world.get(Lead, touched)).owner_id == sara
    assert (await world.get(Lead, won)).owner_id == sara
    change = (await world.audit_of("lead", stale))[-1]
    assert change.changes == {"owner_id": [sara, None]}


# -- a user deactivated ------------------------------------------------------------------------


async def test_deactivating_a_user_hands_their_customers_open_deals_and_tasks_round_robin(world):
    api = world.api
    team = await api.call(
        "POST", "/api/v1/teams", world.headers["admin"], expect=201, json={"name": "Sales"}
    )
    leaver = await world.actor("leaver", team_ids=[team["id"]])
    a = await world.actor("ana", team_ids=[team["id"]])
    b = await world.actor("ben", team_ids=[team["id"]])
    await make_pipeline(world.db)
    c1 = await world.create("contact", ContactIn(first_name="C1", owner_id=leaver))
    c2 = await world.create("contact", ContactIn(first_name="C2", owner_id=leaver))
    deal = await world.create("deal", DealIn(title="Open", owner_id=leaver, contact_id=c1))
    closed = await world.create("deal", DealIn(title="Won", owner_id=leaver, status="won"))
    task = await world.create(
        "activity",
        ActivityIn(
            kind="task", subject="Follow up", owner_id=leaver, assignee_id=leaver, contact_id=c2
        ),
    )
    done = await world.create(
        "activity",
        ActivityIn(kind="task", subject="Old", status="done", owner_id=leaver, assignee_id=leaver),
    )
    rule = await world.rule("user_deactivated", {"team_id": team["id"]})
    await api.call(
        "PATCH", f"/api/v1/users/{leaver}", world.headers["admin"], json={"is_active": False}
    )

    async def ran():
        runs = await world.runs(rule["id"])
        return runs if runs else None

    run = (await ran() or await eventually(ran))[0]
    assert run["trigger"] == "event" and run["affected"] == 4
    owners = [
        (await world.get(Contact, c1)).owner_id,
        (await world.get(Contact, c2)).owner_id,
        (await world.get(Deal, deal)).owner_id,
        (await world.get(Activity, task)).assignee_id,
    ]
    assert owners == [a, b, a, b]  # round robin over the team's active members
    assert (await world.get(Deal, closed)).owner_id == leaver  # closed deals stay
    assert (await world.get(Activity, done)).assignee_id == leaver  # finished tasks too
    assert (await world.get(Activity, task)).owner_id == b


async def test_a_deactivated_users_records_can_go_to_one_named_user(world):
    leaver = await world.actor("leaver")
    heir = await world.actor("heir")
    lead = await world.create("lead", LeadIn(first_name="L", owner_id=leaver))
    rule = await world.rule("user_deactivated", {"to_user_id": heir, "entities": ["lead"]})
    async with world.db.session() as s:
        (await s.get(User, leaver)).is_active = False
    out = await world.run(rule["id"], user_id=leaver)  # e.g. deactivated before the rule
    assert out["affected"] == 1 and (await world.get(Lead, lead)).owner_id == heir


# -- stage entry / exit ------------------------------------------------------------------------


class FakeLauncher:
    """Stands for the e-mail campaign sender: records which campaigns were launched (and
    what their segment held then: the launch comes after the run committed)."""

    def __init__(self, db) -> None:
        self.db = db
        self.launched: list[tuple[int, list[int]]] = []

    async def launch(self, campaign_id, principal):
        async with self.db.session() as s:
            campaign = await s.get(Campaign, campaign_id)
            members = list(
                await s.scalars(
                    select(SegmentMember.entity_id).where(
                        SegmentMember.segment_id == campaign.segment_id
                    )
                )
            )
        self.launched.append((campaign_id, members))


async def _email_campaign(world: World, entity_type: str) -> int:
    async with world.db.session() as s:
        segment = Segment(name=f"welcome-{entity_type}", entity_type=entity_type, kind="static")
        s.add(segment)
        await s.flush()
        campaign = Campaign(name="Welcome", channel="email", segment_id=segment.id)
        s.add(campaign)
        await s.flush()
        return int(campaign.id)


async def test_a_deal_entering_a_stage_gets_an_owner_by_skill_a_task_and_an_email(world):
    api = world.api
    pipeline = await make_pipeline(world.db)
    closer = await world.actor("closer")
    busy_closer = await world.actor("busy")
    await world.actor("novice")
    async with world.db.session() as s:
        for uid in (closer, busy_closer):
            (await s.get(User, uid)).skills = ["closing", "fa"]
        stages = {
            st.name: st.id
            for st in await s.scalars(select(Stage).where(Stage.pipeline_id == pipeline))
        }
    launcher = FakeLauncher(world.db)
    world.service.runner.launcher = launcher
    welcome = await _email_campaign(world, "contact")
    await world.create(
        "deal", DealIn(title="Other", owner_id=busy_closer, stage_id=stages["Qualify"])
    )
    contact = await world.create("contact", ContactIn(first_name="Ali", email="ali@example.com"))
    rule = await world.rule(
        "stage_action",
        {
            "entity": "deal",
            "stage": "proposal",
            "actions": [
                {"type": "assign", "skill": "Closing"},
                {"type": "create_task", "subject": "Send the proposal", "due_in_hours": 4},
                {"type": "send_email", "campaign_id": welcome},
            ],
        },
    )
    exit_rule = await world.rule(
        "stage_action",
        {
            "entity": "deal",
            "on": "exit",
            "stage": "Proposal",
            "actions": [{"type": "create_task", "subject": "Ask why", "assign_to": "unassigned"}],
        },
    )
    deal = await world.create(
        "deal", DealIn(title="Big", contact_id=contact, stage_id=stages["Qualify"])
    )
    await asyncio.sleep(0.3)
    assert await world.runs(rule["id"]) == []  # entering Qualify is not this rule's business
    await api.call(
        "PATCH",
        f"/api/v1/deals/{deal}",
        world.headers["admin"],
        json={"stage_id": stages["Proposal"]},
    )
    run = (await eventually(lambda: world.runs(rule["id"])))[0]
    assert run["affected"] == 3 and run["trigger"] == "event"
    # The least loaded closer (the other one has an open deal already).
    assert (await world.get(Deal, deal)).owner_id == closer
    async with world.db.session() as s:
        task = await s.scalar(select(Activity).where(Activity.deal_id == deal))
    assert task.subject == "Send the proposal" and task.assignee_id == closer
    assert task.contact_id == contact and task.status == "open"

    async def launched() -> list[tuple[int, list[int]]]:
        return launcher.launched  # the launch runs after the run's commit, not within it

    assert await eventually(launched) == [(welcome, [contact])]  # the deal's contact is mailed
    await api.call(
        "PATCH", f"/api/v1/deals/{deal}", world.headers["admin"], json={"stage_id": stages["Won"]}
    )
    exit_run = (await eventually(lambda: world.runs(exit_rule["id"])))[0]
    assert exit_run["records"][0]["action"] == "create_task"
    assert len(await world.runs(rule["id"])) == 1  # leaving is not entering


async def test_a_lead_entering_a_status_runs_its_actions_and_email_without_sender_is_skipped(
    world,
):
    sara = await world.actor("sara")
    world.service.runner.launcher = None  # a gateway without an e-mail sender
    welcome = await _email_campaign(world, "lead")
    rule = await world.rule(
        "stage_action",
        {
            "entity": "lead",
            "stage": "qualified",
            "actions": [
                {"type": "send_email", "campaign_id": welcome},
                {"type": "create_task", "subject": "Call within a day"},
            ],
        },
    )
    lead = await world.create("lead", LeadIn(first_name="Q", owner_id=sara, email="q@example.com"))
    await world.api.call(
        "PATCH", f"/api/v1/leads/{lead}", world.headers["admin"], json={"status": "qualified"}
    )
    run = (await eventually(lambda: world.runs(rule["id"])))[0]
    assert run["skipped"][0]["status"] == "skipped: no e-mail sender is configured"
    assert run["records"][0]["assignee_id"] == sara


# -- lead assignment ---------------------------------------------------------------------------


async def test_new_leads_are_assigned_round_robin_within_caps_per_hour(world):
    a = await world.actor("ana")
    b = await world.actor("ben")
    rule = await world.rule(
        "lead_assignment", {"user_ids": [a, b], "cap_per_hour": 2, "sources": ["web"]}
    )
    leads = []
    for i in range(5):
        leads.append(
            await world.create("lead", LeadIn(first_name=f"L{i}", owner_id=None, source="web"))
        )
    phone = await world.create("lead", LeadIn(first_name="Phone", owner_id=None, source="fair"))

    async def four_assigned():
        owners = [(await world.get(Lead, i)).owner_id for i in leads]
        return owners if sum(o is not None for o in owners) == 4 else None

    owners = await eventually(four_assigned)
    assert owners[:4] == [a, b, a, b] and owners[4] is None
    assert (await world.get(Lead, phone)).owner_id is None  # another source: not this rule's
    runs = await world.runs(rule["id"])
    assert runs[0]["skipped"] == [{"lead": leads[4], "reason": "every user is at a cap"}]
    # An hour later the caps have room again: the scheduled sweep assigns the rest.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)
    await world.service.tick(later)
    assert (await world.get(Lead, leads[4])).owner_id == a
    async with world.db.session() as s:
        given = list(await s.scalars(select(LeadAssignment.user_id).order_by(LeadAssignment.id)))
    assert given == [a, b, a, b, a]


async def test_caps_per_day_hold_across_hours(world):
    a = await world.actor("ana")
    rule = await world.rule("lead_assignment", {"user_ids": [a], "cap_per_day": 1})
    first = await world.create("lead", LeadIn(first_name="One", owner_id=None))
    await eventually(lambda: _owner_is(world, first, a))
    second = await world.create("lead", LeadIn(first_name="Two", owner_id=None))
    await eventually(lambda: world.runs(rule["id"]))
    await world.service.tick(dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))
    assert (await world.get(Lead, second)).owner_id is None
    await world.service.tick(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25))
    assert (await world.get(Lead, second)).owner_id == a


async def _owner_is(world: World, lead: int, uid: int | None) -> bool:
    return (await world.get(Lead, lead)).owner_id == uid


async def test_an_agent_returns_a_lead_a_supervisor_approves_and_it_goes_to_someone_else(world):
    api = world.api
    team = await api.call(
        "POST", "/api/v1/teams", world.headers["admin"], expect=201, json={"name": "Inside"}
    )
    a = await world.actor("ana", team_ids=[team["id"]])
    b = await world.actor("ben", team_ids=[team["id"]])
    await world.actor("boss", "supervisor", team_ids=[team["id"]])
    await world.rule("lead_assignment", {"user_ids": [a, b]})
    lead = await world.create("lead", LeadIn(first_name="Hot", owner_id=None))
    kept = await world.create("lead", LeadIn(first_name="Kept", owner_id=None))
    await eventually(lambda: _owner_is(world, lead, a))
    await eventually(lambda: _owner_is(world, kept, b))
    # Only the owner may return it (another agent does not even see it), with a reason.
    await api.call(
        "POST",
        f"/api/v1/leads/{lead}/return",
        world.headers["ben"],
        expect=404,
        json={"reason": "not mine"},
    )
    await api.call(
        "POST",
        f"/api/v1/leads/{lead}/return",
        world.headers["boss"],
        expect=403,
        json={"reason": "not mine either"},
    )
    ret = await api.call(
        "POST",
        f"/api/v1/leads/{lead}/return",
        world.headers["ana"],
        expect=201,
        json={"reason": "wrong language"},
    )
    assert ret["status"] == "return_requested"
    await api.call(
        "POST",
        f"/api/v1/leads/{lead}/return",
        world.headers["ana"],
        expect=409,
        json={"reason": "again"},
    )
    other = await api.call(
        "POST",
        f"/api/v1/leads/{kept}/return",
        world.headers["ben"],
        expect=201,
        json={"reason": "busy"},
    )
    waiting = await api.call("GET", "/api/v1/automation/returns", world.headers["boss"])
    assert {r["id"] for r in waiting["items"]} == {ret["id"], other["id"]}
    await api.call("GET", "/api/v1/automation/returns", world.headers["ana"], expect=403)
    await api.call(
        "POST", f"/api/v1/automation/returns/{ret['id']}/approve", world.headers["ben"], expect=403
    )
    approved = await api.call(
        "POST",
        f"/api/v1/automation/returns/{ret['id']}/approve",
        world.headers["boss"],
        json={"note": "ok"},
    )
    assert approved["status"] == "returned"
    # Back in the pool, then to someone else (never back to the agent who returned it).
    await eventually(lambda: _owner_is(world, lead, b))
    rejected = await api.call(
        "POST", f"/api/v1/automation/returns/{other['id']}/reject", world.headers["boss"]
    )
    assert rejected["status"] == "return_rejected"
    assert (await world.get(Lead, kept)).owner_id == b
    actions = [e.action for e in await world.audit_of("lead", lead)]
    assert "lead_return_requested" in actions and "lead_return_approved" in actions


# -- reminders ---------------------------------------------------------------------------------


async def _socket(world: World, who: str) -> Any:
    token = world.headers[who]["Authorization"].split()[1]
    ws = await world.api.client.ws_connect("/ws")
    await ws.send_str(json.dumps({"type": "hello", "token": token, "last_seq": None}))
    return ws


async def test_reminders_for_tasks_and_meetings_are_pushed_to_the_desktop_once(world):
    sara = await world.actor("sara")
    reza = await world.actor("reza")
    ali = await world.create(
        "contact", ContactIn(first_name="Ali", phones=[PhoneIn(number="09121234567")])
    )
    now = dt.datetime.now(dt.UTC)
    task = await world.create(
        "activity",
        ActivityIn(
            kind="task",
            subject="Call Ali back",
            assignee_id=sara,
            owner_id=sara,
            contact_id=ali,
            due_at=now + dt.timedelta(minutes=10),
        ),
    )
    meeting = await world.create(
        "activity",
        ActivityIn(
            kind="meeting", subject="Demo", owner_id=sara, starts_at=now + dt.timedelta(minutes=25)
        ),
    )
    later = await world.create(
        "activity",
        ActivityIn(
            kind="task", subject="Next week", assignee_id=sara, due_at=now + dt.timedelta(days=7)
        ),
    )
    offline = await world.create(
        "activity",
        ActivityIn(
            kind="task", subject="For Reza", assignee_id=reza, due_at=now + dt.timedelta(minutes=5)
        ),
    )
    rule = await world.rule("reminders", {"task_minutes_before": 15, "meeting_minutes_before": 30})
    ws = await _socket(world, "sara")
    await next_frame(ws, "snapshot")
    results = await world.service.tick()
    assert [r["rule_id"] for r in results] == [rule["id"]]
    first = await next_frame(ws, "reminder")
    second = await next_frame(ws, "reminder")
    got = {first["activity_id"]: first, second["activity_id"]: second}
    assert set(got) == {task, meeting}
    assert got[task]["kind"] == "task" and got[task]["subject"] == "Call Ali back"
    assert got[task]["record"] == {
        "type": "contact",
        "id": ali,
        "name": "Ali",
        "url": f"/app#/contact/{ali}",
    }
    assert 9 <= got[task]["minutes"] <= 10 and got[meeting]["kind"] == "meeting"
    # Once only: the next sweep sends nothing new (Reza is not connected: he gets his later).
    again = await world.service.runner.run(rule["id"], "schedule")
    assert again["affected"] == 0 and again["skipped"][0]["activity_id"] == offline
    mine = await world.api.call("GET", "/api/v1/automation/reminders", world.headers["sara"])
    assert {r["activity_id"] for r in mine["items"]} == {task, meeting}
    assert later not in {r["activity_id"] for r in mine["items"]}
    await world.api.call(
        "POST",
        f"/api/v1/automation/reminders/{got[task]['reminder_id']}/dismiss",
        world.headers["sara"],
        expect=204,
    )
    mine = await world.api.call("GET", "/api/v1/automation/reminders", world.headers["sara"])
    assert [r["activity_id"] for r in mine["items"]] == [meeting]
    # A moved due time is reminded again.
    await world.api.call(
        "PATCH",
        f"/api/v1/activities/{task}",
        world.headers["admin"],
        json={"due_at": (now + dt.timedelta(minutes=12)).isoformat()},
    )
    await world.service.runner.run(rule["id"], "schedule")
    moved = await next_frame(ws, "reminder")
    assert moved["activity_id"] == task
    await ws.close()
    # Only runs that sent something are in the audit log (sweeps run every minute).
    assert len(await world.runs(rule["id"])) == 2


# -- the scheduler -----------------------------------------------------------------------------


async def test_the_scheduler_runs_a_rule_when_due_and_once_per_period(world):
    rule = await world.rule("stale_prospect", {"days": 90, "every_minutes": 60})
    now = dt.datetime.now(dt.UTC)
    assert [r["rule_id"] for r in await world.service.tick(now)] == [rule["id"]]
    assert await world.service.tick(now + dt.timedelta(minutes=30)) == []
    assert len(await world.service.tick(now + dt.timedelta(minutes=61))) == 1
    assert len(await world.runs(rule["id"])) == 2
    await world.api.call(
        "PATCH",
        f"/api/v1/automation/rules/{rule['id']}",
        world.headers["admin"],
        json={"enabled": False},
    )
    assert await world.service.tick(now + dt.timedelta(days=1)) == []


async def test_a_failing_run_changes_nothing_and_is_audited_as_failed(world, monkeypatch):
    sara = await world.actor("sara")
    lead = await world.create("lead", LeadIn(first_name="Old", owner_id=sara))
    await world.age(Lead, lead, 200)
    rule = await world.rule("stale_prospect", {"days": 90})
    real = runner.HANDLERS["stale_prospect"]

    async def broken(*args):
        await real(*args)  # releases the lead, then fails
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(runner.HANDLERS, "stale_prospect", broken)
    out = await world.run(rule["id"])
    assert out == {**out, "status": "error", "error": "disk on fire"}
    assert (await world.get(Lead, lead)).owner_id == sara  # rolled back
    runs = await world.runs(rule["id"])
    assert runs[0]["status"] == "error" and runs[0]["error"] == "disk on fire"
    info = await world.api.call(
        "GET", f"/api/v1/automation/rules/{rule['id']}", world.headers["admin"]
    )
    assert info["last_status"] == "error" and info["runs"] == 1


# -- record events -------------------------------------------------------------------------------


async def test_record_changes_reach_listeners_only_once_committed(db):
    from crm.services import changes

    admin = await make_actor(db, "admin", "admin")
    heard: list[Any] = []

    def listener(event: Any) -> None:
        heard.append(event)

    changes.add_listener(listener, db.engine.sync_engine)
    try:
        with pytest.raises(RuntimeError):
            async with db.session() as s:
                await records.create(
                    s, admin.principal, SPECS["lead"], LeadIn(first_name="X"), "IR"
                )
                assert heard == []  # not before the commit
                raise RuntimeError("rolled back")
        assert heard == []  # a rolled-back change is never announced
        async with db.session() as s:
            lead = await records.create(
                s, admin.principal, SPECS["lead"], LeadIn(first_name="Y"), "IR"
            )
            assert heard == []
        assert [(e.type, e.entity, e.entity_id, e.action) for e in heard] == [
            ("record.changed", "lead", lead.id, "create")
        ]
        assert heard[0].changes["first_name"] == [None, "Y"]
    finally:
        changes.remove_listener(listener)


async def test_the_gateway_runs_scheduled_rules_by_itself(db, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from tamas.app import create_app
    from tamas.config import Settings
    from tests.crm_fixtures import Api

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        agi_port=0,
        automation={"tick_seconds": 0.2},
    )
    client = TestClient(TestServer(create_app(settings, db), host="127.0.0.1"))
    await client.start_server()
    try:
        api = Api(client, db)
        admin = await api.actor("admin", "admin")
        sara = await make_actor(db, "sara")
        async with db.session() as s:
            lead = await records.create(
                s, sara.principal, SPECS["lead"], LeadIn(first_name="Old"), "IR"
            )
            await s.execute(
                update(Lead)
                .where(Lead.id == lead.id)
                .values(created_at=NOW - dt.timedelta(days=100))
            )
        rule = await api.call(
            "POST",
            "/api/v1/automation/rules",
            admin,
            expect=201,
            json={"name": "Pool", "kind": "stale_prospect", "config": {"days": 90}},
        )

        async def released():
            async with db.session() as s:
                return (await s.get(Lead, lead.id)).owner_id is None

        await eventually(released)
        info = await api.call("GET", f"/api/v1/automation/rules/{rule['id']}", admin)
        assert info["last_status"] == "ok" and info["last_detail"]["trigger"] == "schedule"
    finally:
        await client.close()
