"""The call campaign REST API: who may do what, settings validated with clear errors, the
list and its progress; and customers outside their calling hours wait for them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from crm.models import Campaign, DialerEntry, Segment, SegmentMember
from crm.schemas import ContactIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from cti.dialer import DIALER
from tests.crm_fixtures import make_actor


async def _contacts(api, admin_actor, names_numbers, **fields):
    ids = []
    async with api.db.session() as s:
        for name, number in names_numbers:
            rec = await records.create(
                s,
                admin_actor.principal,
                SPECS["contact"],
                ContactIn(first_name=name, phones=[PhoneIn(number=number)], **fields),
                "IR",
            )
            ids.append(rec.id)
    return ids


async def _segment(api, ids):
    async with api.db.session() as s:
        seg = Segment(name=f"seg-{ids[0]}", entity_type="contact", kind="static", filter={})
        s.add(seg)
        await s.flush()
        s.add_all(SegmentMember(segment_id=seg.id, entity_id=i) for i in ids)
        return seg.id


async def test_settings_are_validated_field_by_field(api):
    admin = await api.actor("admin", "admin")
    base = {"name": "X", "segment_id": 1}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"calling_hours": "9 to 5"}, "calling_hours"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"retry_minutes": {"sometimes": 5}}, "retry_minutes"),
        ({"calling_days": ["funday"]}, "calling_days"),
        ({"mode": "predictive"}, "mode"),
        ({"max_attempts": 0}, "max_attempts"),
        (
            {"dispositions": [{"code": "a", "en": "A", "fa": "A"}] * 2},
            "dispositions",
        ),
        ({"name": None, "segment_id": None}, "body"),
    ]
    for extra, field in cases:
        out = await api.call(
            "POST", "/api/v1/dialer/campaigns", admin, expect=422, json={**base, **extra}
        )
        assert out["errors"][0]["field"] == field, (extra, out)


async def test_agents_may_not_manage_call_campaigns_but_see_theirs_with_masked_phones(api):
    admin_actor = await make_actor(api.db, "admin", "admin")
    admin = await api.login("admin", admin_actor.password)
    agent_actor = await make_actor(api.db, "sara")
    sara = await api.login("sara", agent_actor.password)
    other = await api.actor("reza")
    ids = await _contacts(api, admin_actor, [("Ali", "09121110001"), ("Bahar", "09121110002")])
    segment = await _segment(api, ids)
    body = {"name": "Autumn", "segment_id": segment, "agent_ids": [agent_actor.user.id]}
    await api.call("POST", "/api/v1/dialer/campaigns", sara, expect=403, json=body)
    campaign = await api.call("POST", "/api/v1/dialer/campaigns", admin, expect=201, json=body)
    cid = campaign["id"]
    assert campaign["status"] == "draft" and campaign["mode"] == "progressive"
    assert campaign["progress"]["total"] == 0
    await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/start", sara, expect=403)
    await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/build", admin)
    listed = await api.call("GET", f"/api/v1/dialer/campaigns/{cid}/entries", sara)
    assert [e["phone"] for e in listed["items"]] == ["+98912****001", "+98912****002"]
    full = await api.call("GET", f"/api/v1/dialer/campaigns/{cid}/entries", admin)
    assert [e["phone"] for e in full["items"]] == ["+989121110001", "+989121110002"]
    assert [c["id"] for c in (await api.call("GET", "/api/v1/dialer/campaigns", sara))["items"]]
    assert (await api.call("GET", "/api/v1/dialer/campaigns", other))["items"] == []
    await api.call("GET", f"/api/v1/dialer/campaigns/{cid}", other, expect=404)
    # A campaign gets one dialer; e-mail campaigns do not dial; states move in order.
    await api.call("POST", "/api/v1/dialer/campaigns", admin, expect=409, json={"campaign_id": cid})
    async with api.db.session() as s:
        mail = Campaign(name="Newsletter", channel="email")
        s.add(mail)
        await s.flush()
        mail_id = mail.id
    out = await api.call(
        "POST", "/api/v1/dialer/campaigns", admin, expect=422, json={"campaign_id": mail_id}
    )
    assert out["errors"][0]["field"] == "campaign_id"
    await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/pause", admin, expect=409)
    await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/start", admin)
    await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/start", admin, expect=409)
    patched = await api.call(
        "PATCH",
        f"/api/v1/dialer/campaigns/{cid}",
        admin,
        json={"max_attempts": 5, "calling_hours": "10:00-18:00"},
    )
    assert (patched["max_attempts"], patched["calling_hours"]) == (5, "10:00-18:00")
    stopped = await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/stop", admin)
    assert stopped["status"] == "done"


async def test_a_new_member_of_the_segment_is_added_and_one_who_left_is_excluded(api):
    admin_actor = await make_actor(api.db, "admin", "admin")
    admin = await api.login("admin", admin_actor.password)
    ids = await _contacts(api, admin_actor, [("Ali", "09121110001"), ("Bahar", "09121110002")])
    segment = await _segment(api, ids[:1])
    campaign = await api.call(
        "POST",
        "/api/v1/dialer/campaigns",
        admin,
        expect=201,
        json={"name": "Grow", "segment_id": segment},
    )
    first = await api.call("POST", f"/api/v1/dialer/campaigns/{campaign['id']}/build", admin)
    assert first["added"] == 1
    async with api.db.session() as s:
        await s.delete(await s.get(SegmentMember, (segment, ids[0])))
        s.add(SegmentMember(segment_id=segment, entity_id=ids[1]))
    again = await api.call("POST", f"/api/v1/dialer/campaigns/{campaign['id']}/build", admin)
    assert again == {"added": 1, "excluded": 0, "left": 1, "total": 2}


async def test_customers_outside_their_calling_hours_wait_for_them(api):
    """The dialer never calls a customer outside the campaign's hours in the customer's
    own time zone: their entry waits for the next opening (no PBX is needed to see it)."""
    admin_actor = await make_actor(api.db, "admin", "admin")
    admin = await api.login("admin", admin_actor.password)
    agent = await make_actor(api.db, "sara", devices=["PJSIP/1001"])
    dubai_now = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=4)))
    opens = (dubai_now + dt.timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    hours = f"{opens:%H}:00-{(opens + dt.timedelta(hours=1)):%H}:00"
    ids = await _contacts(api, admin_actor, [("Ali", "09121110001")], timezone="Asia/Dubai")
    segment = await _segment(api, ids)
    campaign = await api.call(
        "POST",
        "/api/v1/dialer/campaigns",
        admin,
        expect=201,
        json={
            "name": "Hours",
            "segment_id": segment,
            "agent_ids": [agent.user.id],
            "calling_hours": hours,
            "timezone": "Asia/Tehran",
        },
    )
    await api.call("POST", f"/api/v1/dialer/campaigns/{campaign['id']}/start", admin)
    service = api.client.app[DIALER]
    run = (await service.running(dt.datetime.now(dt.UTC)))[campaign["id"]]
    candidates = await service._candidates(run, [agent.user.id], dt.datetime.now(dt.UTC))
    assert candidates == []
    async with api.db.session() as s:
        entry = await s.scalar(select(DialerEntry).where(DialerEntry.campaign_id == campaign["id"]))
    assert entry.state == "pending" and entry.reason == "outside calling hours"
    assert entry.next_attempt_at == opens.astimezone(dt.UTC)


async def test_a_call_campaign_set_running_elsewhere_builds_its_list_by_itself(api):
    admin_actor = await make_actor(api.db, "admin", "admin")
    admin = await api.login("admin", admin_actor.password)
    ids = await _contacts(api, admin_actor, [("Ali", "09121110001")])
    segment = await _segment(api, ids)
    campaign = await api.call(
        "POST",
        "/api/v1/dialer/campaigns",
        admin,
        expect=201,
        json={"name": "Elsewhere", "segment_id": segment},
    )
    await api.call(
        "PATCH", f"/api/v1/campaigns/{campaign['id']}", admin, json={"status": "running"}
    )
    service = api.client.app[DIALER]
    assert campaign["id"] in await service.running(dt.datetime.now(dt.UTC))
    listed = await api.call("GET", f"/api/v1/dialer/campaigns/{campaign['id']}/entries", admin)
    assert [e["entity_id"] for e in listed["items"]] == ids
