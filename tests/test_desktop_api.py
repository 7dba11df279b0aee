"""REST routes the agent desktop and the wallboard use: configuration, one search box over
customers (name, phone in any form, e-mail), linking a caller's number to a record, the
user's own language, and finding a call's activity by its PBX call id."""

from __future__ import annotations

import datetime as dt

import pydantic
import pytest
from sqlalchemy import select

from crm.models import Activity
from tamas.config import DesktopSettings, LabelledCode, Settings


async def _team(api, admin, name, queue):
    return (
        await api.call("POST", "/api/v1/teams", admin, 201, json={"name": name, "queue": queue})
    )["id"]


async def test_config_gives_dispositions_pause_reasons_and_the_users_queues(api):
    admin = await api.actor("admin", "admin")
    sales = await _team(api, admin, "Sales", "sales")
    await _team(api, admin, "Support", "support")
    sara = await api.actor("sara", "agent", team_ids=[sales])
    out = await api.call("GET", "/api/v1/desktop/config", sara)
    assert out["queues"] == ["sales"]  # only her team's queue
    assert out["agents"] == []  # agents act for nobody else
    codes = [d["code"] for d in out["dispositions"]]
    assert "sale" in codes and all(d["fa"] and d["en"] for d in out["dispositions"])
    assert [r["code"] for r in out["pause_reasons"]][:2] == ["break", "lunch"]
    assert out["user"]["username"] == "sara" and out["user"]["scope"] == "own"
    assert out["timezone"] == "Asia/Tehran"


async def test_config_lists_the_agents_a_supervisor_may_act_for(api):
    admin = await api.actor("admin", "admin")
    sales = await _team(api, admin, "Sales", "sales")
    support = await _team(api, admin, "Support", "support")
    await api.actor("sara", "agent", team_ids=[sales])
    await api.actor("omid", "agent", team_ids=[support])
    boss = await api.actor("boss", "supervisor", team_ids=[sales])
    out = await api.call("GET", "/api/v1/desktop/config", boss)
    assert sorted(a["username"] for a in out["agents"]) == ["boss", "sara"]
    everyone = await api.call("GET", "/api/v1/desktop/config", admin)
    assert {"admin", "boss", "omid", "sara"} <= {a["username"] for a in everyone["agents"]}
    assert everyone["queues"] == ["sales", "support"]


def test_disposition_codes_are_configurable_and_checked():
    custom = Settings(
        desktop=DesktopSettings(dispositions=[LabelledCode(code="booked", en="Booked", fa="رزرو")])
    )
    assert [d.code for d in custom.desktop.dispositions] == ["booked"]
    with pytest.raises(pydantic.ValidationError):
        LabelledCode(code="has space", en="x", fa="y")


async def _customers(api, admin):
    ali = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        201,
        json={
            "first_name": "علی",
            "last_name": "رضایی",
            "email": "ali@example.com",
            "phones": [{"number": "09121234567"}],
        },
    )
    lead = await api.call(
        "POST",
        "/api/v1/leads",
        admin,
        201,
        json={"first_name": "Maryam", "last_name": "Karimi", "phones": [{"number": "02188776655"}]},
    )
    return ali, lead


async def test_search_finds_customers_by_name_with_persian_spelling_variants(api):
    admin = await api.actor("admin", "admin")
    ali, lead = await _customers(api, admin)
    out = await api.call("GET", "/api/v1/search?q=علي", admin)  # Arabic yeh
    assert [(r["type"], r["id"]) for r in out["items"]] == [("contact", ali["id"])]
    out = await api.call("GET", "/api/v1/search?q=karimi", admin)
    assert [(r["type"], r["id"]) for r in out["items"]] == [("lead", lead["id"])]
    assert out["items"][0]["url"] == f"/app#/lead/{lead['id']}"


async def test_search_finds_a_phone_number_written_in_any_form(api):
    admin = await api.actor("admin", "admin")
    ali, lead = await _customers(api, admin)
    for form in ("+98 912 123 4567", "۰۹۱۲۱۲۳۴۵۶۷", "0098-912-123-4567", "9121234567"):
        out = await api.call("GET", f"/api/v1/search?q={form.replace('+', '%2B')}", admin)
        hits = [(r["type"], r["id"], r["matched_phone"]) for r in out["items"]]
        assert hits[0] == ("contact", ali["id"], True), form
    out = await api.call("GET", "/api/v1/search?q=021 8877 6655", admin)
    assert out["items"][0]["id"] == lead["id"] and out["items"][0]["type"] == "lead"


async def test_search_finds_by_email_and_only_what_the_user_may_see(api):
    admin = await api.actor("admin", "admin")
    ali, _ = await _customers(api, admin)
    await api.call("PATCH", f"/api/v1/contacts/{ali['id']}", admin, json={"owner_id": 1})
    out = await api.call("GET", "/api/v1/search?q=ali@example.com", admin)
    assert [r["id"] for r in out["items"]] == [ali["id"]]
    reza = await api.actor("reza", "agent")
    assert (await api.call("GET", "/api/v1/search?q=ali@example.com", reza))["items"] == []
    assert (await api.call("GET", "/api/v1/search?q=09121234567", reza))["items"] == []


async def test_search_shows_agents_masked_phones(api):
    admin = await api.actor("admin", "admin")
    sara = await api.actor("sara", "agent")
    await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        201,
        json={"first_name": "Neda", "owner_id": 2, "phones": [{"number": "09351112233"}]},
    )
    out = await api.call("GET", "/api/v1/search?q=09351112233", sara)
    assert out["items"][0]["phones"] == [{"number": "+98935****233", "kind": "mobile"}]


async def test_empty_search_is_a_clear_error(api):
    admin = await api.actor("admin", "admin")
    err = await api.call("GET", "/api/v1/search?q=%20", admin, expect=422)
    assert err["errors"][0]["field"] == "q"


async def test_linking_a_number_adds_it_without_touching_the_others(api):
    admin = await api.actor("admin", "admin")
    ali, _ = await _customers(api, admin)
    out = await api.call(
        "POST", f"/api/v1/contacts/{ali['id']}/phones", admin, 201, json={"number": "0912 555 0000"}
    )
    assert out == {"added": True, "phones": 2}
    again = await api.call(
        "POST", f"/api/v1/contacts/{ali['id']}/phones", admin, json={"number": "+989125550000"}
    )
    assert again == {"added": False, "phones": 2}
    rec = await api.call("GET", f"/api/v1/contacts/{ali['id']}", admin)
    assert [p["number"] for p in rec["phones"]] == ["+989121234567", "+989125550000"]
    found = await api.call("GET", "/api/v1/lookup?number=09125550000", admin)
    assert [m["id"] for m in found["matches"]] == [ali["id"]]
    history = await api.call("GET", f"/api/v1/contacts/{ali['id']}/history", admin)
    assert history["items"][-1]["changes"]["phones"][1] == ["+989121234567", "+989125550000"]
    bad = await api.call(
        "POST", f"/api/v1/contacts/{ali['id']}/phones", admin, 422, json={"number": "hello"}
    )
    assert bad["errors"][0]["field"].startswith("number")


async def test_an_agent_links_a_callers_number_through_the_call_without_seeing_it(api, db):
    admin = await api.actor("admin", "admin")
    sara = await api.actor("sara", "agent")
    lead = await api.call("POST", "/api/v1/leads", sara, 201, json={"first_name": "New"})
    async with db.session() as s:
        call = Activity(
            kind="call",
            pbx="lab",
            call_uid="1700000000.1",
            external_number="+989127778899",
            owner_id=2,
            agent_id=2,
            occurred_at=dt.datetime.now(dt.UTC),
            details={},
        )
        s.add(call)
        await s.flush()
        call_id = call.id
    # The agent does not know the number (masked), she names the call.
    await api.call(
        "POST", f"/api/v1/leads/{lead['id']}/phones", sara, 201, json={"activity_id": call_id}
    )
    rec = await api.call("GET", f"/api/v1/leads/{lead['id']}", admin)
    assert [p["number"] for p in rec["phones"]] == ["+989127778899"]
    assert rec["phones"][0]["is_primary"] is True
    # Someone else's call is not hers to use.
    await api.actor("reza", "agent")
    reza = await api.login("reza", "secret-reza")
    other = await api.call("POST", "/api/v1/leads", reza, 201, json={"first_name": "Other"})
    await api.call(
        "POST", f"/api/v1/leads/{other['id']}/phones", reza, 404, json={"activity_id": call_id}
    )
    both = await api.call(
        "POST",
        f"/api/v1/leads/{lead['id']}/phones",
        sara,
        422,
        json={"activity_id": call_id, "number": "0912"},
    )
    assert "either number or activity_id" in both["errors"][0]["reason"]


async def test_a_call_activity_is_found_by_its_pbx_call_id(api, db):
    admin = await api.actor("admin", "admin")
    async with db.session() as s:
        s.add_all(
            [
                Activity(kind="call", pbx="lab", call_uid=uid, occurred_at=dt.datetime.now(dt.UTC))
                for uid in ("1.1", "1.2")
            ]
        )
    out = await api.call("GET", "/api/v1/activities?kind=call&pbx=lab&call_uid=1.2", admin)
    async with db.session() as s:
        expected = await s.scalar(select(Activity.id).where(Activity.call_uid == "1.2"))
    assert [a["id"] for a in out["items"]] == [expected]


async def test_users_choose_their_own_language(api):
    sara = await api.actor("sara", "agent")
    out = await api.call("PATCH", "/api/v1/me", sara, json={"language": "en"})
    assert out["language"] == "en"
    me = await api.call("GET", "/api/v1/me", sara)
    assert me["language"] == "en"
    bad = await api.call("PATCH", "/api/v1/me", sara, 422, json={"language": "de"})
    assert bad["errors"][0]["field"] == "language"
    # Nothing else about the user can be changed this way.
    await api.call("PATCH", "/api/v1/me", sara, 422, json={"language": "fa", "role": "admin"})


async def test_waiting_callbacks_are_listed_with_the_boolean_filter(api, db):
    admin = await api.actor("admin", "admin")
    for subject, callback in (("Call back Ali", True), ("Send the brochure", False)):
        await api.call(
            "POST",
            "/api/v1/activities",
            admin,
            201,
            json={"kind": "task", "subject": subject, "is_callback": callback},
        )
    out = await api.call(
        "GET", "/api/v1/activities?kind=task&is_callback=true&status=open&sort=due_at", admin
    )
    assert [a["subject"] for a in out["items"]] == ["Call back Ali"]
    out = await api.call("GET", "/api/v1/activities?kind=task&is_callback__ne=true", admin)
    assert [a["subject"] for a in out["items"]] == ["Send the brochure"]
