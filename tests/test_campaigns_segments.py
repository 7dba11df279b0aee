"""Segments: every criterion kind selects exactly the records the rule describes, static and
dynamic segments behave as documented, scope and masking are respected, bad filters get
clear errors, and counts equal plain SQL over the raw tables (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from crm.campaigns import segments
from crm.campaigns.filters import FilterError, compile_filter
from crm.models import (
    Activity,
    Campaign,
    Contact,
    CustomFieldDef,
    CustomFieldValue,
    Deal,
    EmailMessage,
    Phone,
    Segment,
    Tag,
    Tagging,
)
from tests.crm_fixtures import Actor, make_actor, make_pipeline

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def days_ago(n: float) -> dt.datetime:
    return NOW - dt.timedelta(days=n)


@dataclass
class World:
    ids: dict[str, int]  # contact key -> id
    ann: Actor  # agent
    boss: Actor  # admin
    campaign_id: int
    call_campaign_id: int

    def of(self, *keys: str) -> list[int]:
        return sorted(self.ids[k] for k in keys)

    @property
    def live(self) -> set[str]:
        return {k for k in self.ids if k not in ("deleted", "merged")}


async def build_world(db) -> World:
    """Eight live contacts (plus a deleted and a merged one) with varied fields, tags,
    custom fields, phones, deals, calls, meetings and campaign e-mails."""
    ann = await make_actor(db, "ann", "agent")
    boss = await make_actor(db, "boss", "admin")
    pipeline_id = await make_pipeline(db)
    async with db.session() as s:
        people: dict[str, dict[str, Any]] = {
            "ali": dict(
                first_name="Ali",
                last_name="Rezaei",
                email="ali@example.com",
                language="fa",
                lifecycle_stage="customer",
                is_vip=True,
                satisfaction=9,
                owner_id=ann.user.id,
                created_at=days_ago(400),
            ),
            "sara": dict(
                first_name="Sara",
                last_name="Karimi",
                email="sara@example.com",
                language="fa",
                lifecycle_stage="customer",
                satisfaction=4,
                owner_id=boss.user.id,
                created_at=days_ago(10),
            ),
            "john": dict(
                first_name="John",
                last_name="Smith",
                email="JOHN@example.org",
                language="en",
                lifecycle_stage="prospect",
                satisfaction=7,
                owner_id=None,
                created_at=days_ago(5),
            ),
            "maryam": dict(
                first_name="مریم",
                last_name="احمدی",
                email=None,
                language="fa",
                lifecycle_stage="lead",
                owner_id=boss.user.id,
                created_at=days_ago(100),
            ),
            "reza": dict(
                first_name="Reza",
                last_name="Nouri",
                email="reza@example.com",
                language="fa",
                lifecycle_stage=None,
                email_opt_out=True,
                owner_id=ann.user.id,
                created_at=days_ago(30),
            ),
            "nina": dict(
                first_name="Nina",
                last_name="Ray",
                email="nina@example.net",
                language="en",
                lifecycle_stage="customer",
                satisfaction=10,
                owner_id=None,
                created_at=days_ago(2),
            ),
            "omid": dict(
                first_name="Omid",
                last_name="Zand",
                email="omid@example.com",
                lifecycle_stage="former",
                owner_id=boss.user.id,
                created_at=days_ago(800),
            ),
            "leila": dict(
                first_name="Leila",
                last_name="Sadeghi",
                email="leila@example.com",
                language="fa",
                lifecycle_stage="customer",
                do_not_call=True,
                owner_id=boss.user.id,
                created_at=days_ago(60),
            ),
            "deleted": dict(
                first_name="Gone",
                last_name="Away",
                lifecycle_stage="customer",
                deleted_at=days_ago(1),
                created_at=days_ago(50),
            ),
            "merged": dict(
                first_name="Ali",
                last_name="Duplicate",
                lifecycle_stage="customer",
                created_at=days_ago(50),
            ),
        }
        objs = {k: Contact(**v) for k, v in people.items()}
        s.add_all(objs.values())
        await s.flush()
        objs["merged"].merged_into_id = objs["ali"].id
        ids = {k: o.id for k, o in objs.items()}

        tags = {n: Tag(name=n) for n in ("vip", "gold", "دیجیتال")}
        s.add_all(tags.values())
        await s.flush()
        for key, names in {
            "ali": ["vip", "gold"],
            "sara": ["gold"],
            "nina": ["دیجیتال"],
            "deleted": ["vip"],
        }.items():
            for n in names:
                s.add(Tagging(tag_id=tags[n].id, entity_type="contact", entity_id=ids[key]))

        budget = CustomFieldDef(
            entity_type="contact",
            key="budget",
            field_type="number",
            label_en="Budget",
            label_fa="بودجه",
        )
        region = CustomFieldDef(
            entity_type="contact",
            key="region",
            field_type="choice",
            label_en="Region",
            label_fa="منطقه",
            choices=["north", "south"],
        )
        secret = CustomFieldDef(
            entity_type="contact",
            key="national_id",
            field_type="text",
            label_en="ID",
            label_fa="کد ملی",
            sensitive=True,
        )
        s.add_all([budget, region, secret])
        await s.flush()
        for key, b, r in (
            ("ali", 5000, "north"),
            ("sara", 900, "south"),
            ("john", 1500, None),
            ("nina", None, "north"),
        ):
            if b is not None:
                s.add(
                    CustomFieldValue(
                        field_id=budget.id,
                        entity_type="contact",
                        entity_id=ids[key],
                        value_number=Decimal(b),
                    )
                )
            if r is not None:
                s.add(
                    CustomFieldValue(
                        field_id=region.id, entity_type="contact", entity_id=ids[key], value_text=r
                    )
                )

        for key, e164, kind in (
            ("ali", "+989121111111", "mobile"),
            ("sara", "+989351111111", "mobile"),
            ("john", "+442071234567", "office"),
            ("leila", "+989122222222", "mobile"),
        ):
            s.add(Phone(entity_type="contact", entity_id=ids[key], e164=e164, raw=e164, kind=kind))

        camp = Campaign(name="Nowruz mail", channel="email", cost=Decimal(100))
        call_camp = Campaign(name="Winback calls", channel="call")
        s.add_all([camp, call_camp])
        await s.flush()

        from sqlalchemy import select

        from crm.models import Stage

        stages = {
            st.name: st.id
            for st in await s.scalars(select(Stage).where(Stage.pipeline_id == pipeline_id))
        }
        for key, status, amount, closed in (
            ("ali", "won", 3000, days_ago(20)),
            ("ali", "won", 4000, days_ago(200)),
            ("sara", "won", 500, days_ago(5)),
            ("sara", "lost", 9000, days_ago(5)),
            ("omid", "won", 100000, days_ago(700)),
            ("john", "open", 800, None),
        ):
            stage = {"won": "Won", "lost": "Lost", "open": "Qualify"}[status]
            s.add(
                Deal(
                    title=f"{key} deal",
                    pipeline_id=pipeline_id,
                    stage_id=stages[stage],
                    amount=Decimal(amount),
                    status=status,
                    closed_at=closed,
                    contact_id=ids[key],
                    created_at=days_ago(300),
                )
            )

        def call(key, at, answered, disposition=None, campaign=None):
            return Activity(
                kind="call",
                contact_id=ids[key],
                occurred_at=at,
                started_at=at,
                answered_at=at if answered else None,
                disposition=disposition,
                campaign_id=campaign,
                direction="outbound",
            )

        s.add_all(
            [
                call("ali", days_ago(3), True),
                call("sara", days_ago(40), True),
                call("sara", days_ago(2), False),  # missed: no contact
                call("john", days_ago(200), True),
                Activity(kind="meeting", contact_id=ids["nina"], occurred_at=days_ago(15)),
                Activity(kind="note", contact_id=ids["omid"], occurred_at=days_ago(1)),
                call("leila", days_ago(1), True, "sale", call_camp.id),
                call("omid", days_ago(1), True, "not_interested", call_camp.id),
                call("reza", days_ago(1), False, None, call_camp.id),
            ]
        )
        for key, status, opened, clicked in (
            ("ali", "sent", True, True),
            ("sara", "sent", True, False),
            ("john", "bounced", False, False),
            ("reza", "skipped", False, False),
            ("nina", "sent", False, False),
        ):
            s.add(
                EmailMessage(
                    campaign_id=camp.id,
                    entity_type="contact",
                    entity_id=ids[key],
                    to_address=people[key]["email"],
                    status=status,
                    opened_at=days_ago(1) if opened else None,
                    clicked_at=days_ago(1) if clicked else None,
                )
            )
    return World(ids, ann, boss, camp.id, call_camp.id)


async def members(db, filt, principal=None, kind="dynamic", entity_type="contact"):
    async with db.session() as s:
        seg = Segment(
            name=f"s{id(filt)}-{kind}-{dt.datetime.now().timestamp()}",
            entity_type=entity_type,
            kind=kind,
            filter=filt,
        )
        s.add(seg)
        await s.flush()
        ids = await segments.segment_member_ids(s, seg, principal, now=NOW)
        count = await segments.count_members(s, seg, principal, now=NOW)
        await s.delete(seg)
    assert count == len(ids)
    return ids


# Each case: a filter and the contacts it must select, by key.
CASES = [
    ({}, ["ali", "sara", "john", "maryam", "reza", "nina", "omid", "leila"]),
    ({"field": "lifecycle_stage", "value": "customer"}, ["ali", "sara", "nina", "leila"]),
    (
        {"field": "lifecycle_stage", "op": "ne", "value": "customer"},
        ["john", "maryam", "reza", "omid"],
    ),
    ({"field": "lifecycle_stage", "op": "in", "value": ["prospect", "lead"]}, ["john", "maryam"]),
    (
        {"field": "lifecycle_stage", "op": "not_in", "value": ["customer", "former"]},
        ["john", "maryam", "reza"],
    ),
    ({"field": "lifecycle_stage", "op": "isnull", "value": True}, ["reza"]),
    (
        {"field": "email", "op": "contains", "value": "EXAMPLE.COM"},
        ["ali", "sara", "reza", "omid", "leila"],
    ),
    ({"field": "email", "op": "startswith", "value": "john@"}, ["john"]),
    ({"field": "first_name", "value": "مریم"}, ["maryam"]),
    ({"field": "is_vip", "value": True}, ["ali"]),
    (
        {"field": "email_opt_out", "value": False},
        ["ali", "sara", "john", "maryam", "nina", "omid", "leila"],
    ),
    ({"field": "satisfaction", "op": "gte", "value": 7}, ["ali", "john", "nina"]),
    ({"field": "satisfaction", "op": "between", "value": [4, 7]}, ["sara", "john"]),
    (
        {"field": "created_at", "op": "gte", "value": {"days_ago": 30}},
        ["sara", "john", "reza", "nina"],
    ),
    ({"field": "created_at", "op": "lt", "value": "2025-01-01"}, ["omid"]),
    ({"tag": "vip"}, ["ali"]),
    ({"tag": ["gold", "دیجیتال"]}, ["ali", "sara", "nina"]),
    ({"custom": "budget", "op": "gte", "value": 1000}, ["ali", "john"]),
    ({"custom": "region", "value": "north"}, ["ali", "nina"]),
    (
        {"custom": "region", "op": "ne", "value": "north"},
        ["sara", "john", "maryam", "reza", "omid", "leila"],
    ),
    (
        {"custom": "budget", "op": "isnull", "value": True},
        ["maryam", "reza", "nina", "omid", "leila"],
    ),
    ({"phone": True}, ["ali", "sara", "john", "leila"]),
    ({"phone": {"prefix": "+98912"}}, ["ali", "leila"]),
    ({"phone": {"kind": "office"}}, ["john"]),
    ({"deals": {"status": "won"}}, ["ali", "sara", "omid"]),
    ({"deals": {"status": "won", "since": {"days_ago": 365}}}, ["ali", "sara"]),
    ({"deals": {"status": "won", "min_total": 5000}}, ["ali", "omid"]),
    ({"deals": {"status": "won", "min_count": 2}}, ["ali"]),
    ({"deals": {"status": "any", "max_count": 0}}, ["maryam", "reza", "nina", "leila"]),
    ({"deals": {"status": "open"}}, ["john"]),
    ({"last_contact": {"within_days": 30}}, ["ali", "nina", "leila", "omid"]),
    ({"last_contact": {"older_than_days": 30}}, ["sara", "john", "maryam", "reza"]),
    ({"last_contact": {"never": True}}, ["maryam", "reza"]),
    ({"last_contact": {"within_days": 30, "kinds": ["note"]}}, ["omid"]),
    ({"last_contact": {"after": "2025-12-01", "before": "2026-01-30"}}, ["sara"]),
    (
        {"campaign": {"response": "targeted"}},
        ["ali", "sara", "john", "nina", "omid", "leila", "reza"],
    ),
    ({"campaign": {"response": "reached"}}, ["ali", "sara", "nina", "leila", "omid"]),
    ({"campaign": {"response": "clicked"}}, ["ali"]),
    ({"campaign": {"response": "opened"}}, ["ali", "sara"]),
    ({"campaign": {"response": "bounced"}}, ["john"]),
    ({"campaign": {"response": "responded"}}, ["ali", "leila"]),
    (
        {"all": [{"field": "lifecycle_stage", "value": "customer"}, {"tag": "gold"}]},
        ["ali", "sara"],
    ),
    ({"any": [{"tag": "vip"}, {"field": "language", "value": "en"}]}, ["ali", "john", "nina"]),
    ({"not": {"tag": "gold"}}, ["john", "maryam", "reza", "nina", "omid", "leila"]),
    ({"all": []}, ["ali", "sara", "john", "maryam", "reza", "nina", "omid", "leila"]),
    ({"any": []}, []),
]


async def test_each_criterion_selects_exactly_the_described_records(db):
    world = await build_world(db)
    for filt, expected in CASES:
        got = await members(db, filt)
        assert got == world.of(*expected), filt


async def test_not_of_any_criterion_is_exactly_its_complement(db):
    world = await build_world(db)
    everyone = set(world.of(*world.live))
    for filt, _ in CASES:
        if not filt:
            continue
        inside = set(await members(db, filt))
        outside = set(await members(db, {"not": filt}))
        assert inside | outside == everyone, filt
        assert not inside & outside, filt


async def test_campaign_specific_responses(db):
    world = await build_world(db)
    cid, call_id = world.campaign_id, world.call_campaign_id
    assert await members(db, {"campaign": {"id": cid, "response": "reached"}}) == world.of(
        "ali", "sara", "nina"
    )
    assert await members(db, {"campaign": {"id": call_id, "response": "reached"}}) == world.of(
        "leila", "omid"
    )
    assert await members(db, {"campaign": {"id": call_id, "response": "responded"}}) == world.of(
        "leila"
    )
    assert await members(db, {"campaign": {"id": call_id, "response": "clicked"}}) == []


async def test_counts_equal_plain_sql_over_the_raw_tables(db):
    await build_world(db)
    checks = [
        (
            {"field": "lifecycle_stage", "value": "customer"},
            "SELECT count(*) FROM contacts WHERE lifecycle_stage = 'customer'"
            " AND deleted_at IS NULL AND merged_into_id IS NULL",
        ),
        (
            {"tag": "gold"},
            "SELECT count(DISTINCT c.id) FROM contacts c JOIN taggings tg"
            " ON tg.entity_type = 'contact' AND tg.entity_id = c.id"
            " JOIN tags t ON t.id = tg.tag_id WHERE t.name = 'gold'"
            " AND c.deleted_at IS NULL AND c.merged_into_id IS NULL",
        ),
        (
            {"deals": {"status": "won", "min_total": 5000}},
            "SELECT count(*) FROM (SELECT d.contact_id FROM deals d JOIN contacts c"
            " ON c.id = d.contact_id WHERE d.status = 'won' AND d.deleted_at IS NULL"
            " AND c.deleted_at IS NULL AND c.merged_into_id IS NULL"
            " GROUP BY d.contact_id HAVING sum(d.amount) >= 5000) x",
        ),
        (
            {"campaign": {"response": "reached"}},
            "SELECT count(*) FROM contacts c WHERE c.deleted_at IS NULL AND"
            " (c.id IN (SELECT entity_id FROM email_messages WHERE status = 'sent'"
            "  AND entity_type = 'contact')"
            " OR c.id IN (SELECT contact_id FROM activities WHERE kind = 'call'"
            "  AND campaign_id IS NOT NULL AND answered_at IS NOT NULL))",
        ),
    ]
    for filt, sql in checks:
        async with db.session() as s:
            raw = (await s.execute(text(sql))).scalar()
        assert len(await members(db, filt)) == raw, filt


async def test_a_static_segment_is_frozen_and_a_dynamic_one_follows_the_records(db):
    world = await build_world(db)
    filt = {"field": "lifecycle_stage", "value": "customer"}
    async with db.session() as s:
        static = await segments.create_segment(
            s,
            world.boss.principal,
            name="customers then",
            entity_type="contact",
            kind="static",
            filt=filt,
        )
        dynamic = await segments.create_segment(
            s,
            world.boss.principal,
            name="customers now",
            entity_type="contact",
            kind="dynamic",
            filt=filt,
        )
    before = world.of("ali", "sara", "nina", "leila")
    async with db.session() as s:
        assert await segments.segment_member_ids(s, static.id) == before
        new = Contact(first_name="New", lifecycle_stage="customer")
        s.add(new)
        gone = await s.get(Contact, world.ids["sara"])
        gone.deleted_at = NOW
        await s.flush()
        assert await segments.segment_member_ids(s, static.id) == sorted(
            set(before) - {world.ids["sara"]}
        )
        assert await segments.segment_member_ids(s, dynamic.id) == sorted(
            set(before) - {world.ids["sara"]} | {new.id}
        )
        # Freezing again takes today's filter result.
        assert await segments.freeze(s, world.boss.principal, static) == 4
        assert new.id in await segments.segment_member_ids(s, static.id)


async def test_static_members_are_edited_by_hand_and_checked(db):
    world = await build_world(db)
    async with db.session() as s:
        seg = await segments.create_segment(
            s,
            world.boss.principal,
            name="hand picked",
            entity_type="contact",
            kind="static",
            filt={},
            member_ids=world.of("ali", "john"),
        )
        n = await segments.edit_members(
            s, world.boss.principal, seg, add=world.of("nina"), remove=world.of("ali")
        )
        assert n == 2
        assert await segments.segment_member_ids(s, seg) == world.of("john", "nina")
    with pytest.raises(Exception, match="no contact"):
        async with db.session() as s:
            seg = await s.get(Segment, seg.id)
            await segments.edit_members(
                s, world.boss.principal, seg, add=[world.ids["deleted"]], remove=[]
            )


async def test_members_are_limited_to_the_users_scope(db):
    world = await build_world(db)
    # ann (agent, scope own + unassigned) owns ali and reza; john and nina are unassigned.
    got = await members(db, {}, principal=world.ann.principal)
    assert got == world.of("ali", "reza", "john", "nina")
    got = await members(
        db, {"field": "lifecycle_stage", "value": "customer"}, principal=world.ann.principal
    )
    assert got == world.of("ali", "nina")


async def test_bad_filters_get_every_problem_with_its_path(db):
    world = await build_world(db)
    bad = {
        "all": [
            {"field": "shoe_size", "value": 42},
            {"field": "lifecycle_stage", "op": "like", "value": "x"},
            {"field": "satisfaction", "op": "gt", "value": "high"},
            {"field": "is_vip", "op": "gt", "value": True},
            {"tag": []},
            {"custom": "colour", "value": "red"},
            {"deals": {"status": "won", "since": "yesterday"}},
            {"last_contact": {"within_days": -1}},
            {"campaign": {"response": "liked"}},
            {"field": "email", "value": None},
            {"mystery": 1},
            "not an object",
        ]
    }
    async with db.session() as s:
        with pytest.raises(FilterError) as caught:
            await segments.compile_for(s, "contact", bad, None)
    fields = [e["field"] for e in caught.value.errors]
    assert fields == [
        "filter.all[0].field",
        "filter.all[1].op",
        "filter.all[2].value",
        "filter.all[3].op",
        "filter.all[4].tag",
        "filter.all[5].custom",
        "filter.all[6].deals.since",
        "filter.all[7].last_contact.within_days",
        "filter.all[8].campaign.response",
        "filter.all[9].value",
        "filter.all[10]",
        "filter.all[11]",
    ]
    reasons = {e["field"]: e["reason"] for e in caught.value.errors}
    assert "'shoe_size' is not a field of contact records" in reasons["filter.all[0].field"]
    assert "unknown operator 'like'" in reasons["filter.all[1].op"]
    # Leads have no deal history; the agent's role masks sensitive custom fields.
    with pytest.raises(FilterError, match="deal history applies"):
        compile_filter("lead", {"deals": {}}, now=NOW)
    async with db.session() as s:
        with pytest.raises(FilterError, match="masked for your role"):
            await segments.compile_for(
                s, "contact", {"custom": "national_id", "value": "1"}, world.ann.principal
            )
        with pytest.raises(FilterError, match="masked for your role"):
            await segments.compile_for(
                s, "contact", {"phone": {"prefix": "+98912"}}, world.ann.principal
            )
        await segments.compile_for(s, "contact", {"phone": True}, world.ann.principal)


async def test_lead_and_account_segments_and_a_lead_list_audience(db):
    from crm.models import Account, Lead, LeadList

    async with db.session() as s:
        lst = LeadList(name="Expo")
        s.add(lst)
        await s.flush()
        leads = [
            Lead(first_name="A", status="new", lead_list_id=lst.id, rating="hot"),
            Lead(first_name="B", status="qualified", lead_list_id=lst.id),
            Lead(first_name="C", status="new", rating="hot"),
            Lead(first_name="D", status="new", lead_list_id=lst.id, deleted_at=NOW),
        ]
        accounts = [Account(name="Acme", city="Tehran"), Account(name="Beta", city="Shiraz")]
        s.add_all(leads + accounts)
        await s.flush()
        camp = Campaign(name="Expo follow-up", lead_list_id=lst.id)
        s.add(camp)
        await s.flush()
        assert await segments.campaign_audience(s, camp) == ("lead", [leads[0].id, leads[1].id])
    hot_new = await members(
        db,
        {"all": [{"field": "status", "value": "new"}, {"field": "rating", "value": "hot"}]},
        entity_type="lead",
    )
    assert hot_new == [leads[0].id, leads[2].id]
    assert await members(db, {"field": "city", "value": "Tehran"}, entity_type="account") == [
        accounts[0].id
    ]
