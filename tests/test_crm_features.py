"""Custom fields, tags, merging, deals in pipelines, documents and timelines."""

from __future__ import annotations

import aiohttp

from tests.crm_fixtures import make_pipeline


async def test_custom_fields_are_validated_stored_and_filterable(api):
    admin = await api.actor("admin", "admin")
    for key, ftype, extra in (
        ("budget", "number", {}),
        ("region", "choice", {"choices": ["north", "south"]}),
        ("since", "date", {}),
    ):
        await api.call(
            "POST",
            "/api/v1/custom-fields",
            admin,
            expect=201,
            json={
                "entity_type": "account",
                "key": key,
                "field_type": ftype,
                "label_en": key,
                "label_fa": key,
                **extra,
            },
        )
    bad = await api.call(
        "POST",
        "/api/v1/accounts",
        admin,
        expect=422,
        json={"name": "X", "custom": {"budget": "lots", "region": "east", "color": "red"}},
    )
    assert {e["field"] for e in bad["errors"]} == {"custom.budget", "custom.region", "custom.color"}
    for name, budget, region in (("A", 100, "north"), ("B", 5000, "south"), ("C", 900, "north")):
        await api.call(
            "POST",
            "/api/v1/accounts",
            admin,
            expect=201,
            json={
                "name": name,
                "custom": {"budget": budget, "region": region, "since": "2024-01-31"},
            },
        )
    rich_north = await api.call(
        "GET", "/api/v1/accounts?cf.region=north&cf.budget__gte=500&sort=name", admin
    )
    assert [a["name"] for a in rich_north["items"]] == ["C"]
    assert rich_north["items"][0]["custom"] == {
        "budget": 900,
        "region": "north",
        "since": "2024-01-31",
    }


async def test_tags_filter_and_are_created_on_the_fly(api):
    admin = await api.actor("admin", "admin")
    await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=201,
        json={"first_name": "V", "tags": ["vip", "tehran"]},
    )
    await api.call(
        "POST", "/api/v1/contacts", admin, expect=201, json={"first_name": "N", "tags": ["tehran"]}
    )
    both = await api.call("GET", "/api/v1/contacts?tag=vip,tehran", admin)
    assert [c["first_name"] for c in both["items"]] == ["V"]
    tags = await api.call("GET", "/api/v1/tags", admin)
    assert sorted(t["name"] for t in tags["items"]) == ["tehran", "vip"]


async def test_merge_moves_history_phones_and_tags_to_the_survivor_and_is_audited(api):
    admin = await api.actor("admin", "admin")
    keep = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=201,
        json={"first_name": "Ali", "phones": [{"number": "09121234567"}], "tags": ["vip"]},
    )
    dup = await api.call(
        "POST",
        "/api/v1/contacts?allow_duplicate=1",
        admin,
        expect=201,
        json={
            "first_name": "Ali R",
            "email": "ali@example.com",
            "phones": [{"number": "09121234567"}, {"number": "02188776655", "kind": "office"}],
            "tags": ["tehran"],
        },
    )
    await api.call(
        "POST",
        "/api/v1/activities",
        admin,
        expect=201,
        json={"kind": "call", "contact_id": dup["id"], "direction": "inbound"},
    )
    out = await api.call(
        "POST", f"/api/v1/contacts/{keep['id']}/merge", admin, json={"duplicate_ids": [dup["id"]]}
    )
    assert out["moved"]["activities"] == 1
    merged = await api.call("GET", f"/api/v1/contacts/{keep['id']}", admin)
    assert sorted(p["number"] for p in merged["phones"]) == ["+982188776655", "+989121234567"]
    assert merged["tags"] == ["tehran", "vip"] and merged["email"] == "ali@example.com"
    timeline = await api.call("GET", f"/api/v1/contacts/{keep['id']}/timeline", admin)
    assert [a["kind"] for a in timeline["items"]] == ["call"]
    await api.call("GET", f"/api/v1/contacts/{dup['id']}", admin, expect=404)
    found = await api.call("GET", "/api/v1/lookup?number=09121234567", admin)
    assert [m["id"] for m in found["matches"]] == [keep["id"]]
    history = await api.call("GET", f"/api/v1/contacts/{keep['id']}/history", admin)
    assert history["items"][-1]["action"] == "merge"
    assert history["items"][-1]["detail"]["merged_ids"] == [dup["id"]]


async def test_switchboard_number_shared_by_company_and_staff_is_reported_as_shared(api):
    admin = await api.actor("admin", "admin")
    acc = await api.call(
        "POST",
        "/api/v1/accounts",
        admin,
        expect=201,
        json={"name": "Pars", "phones": [{"number": "021 8877 6655", "kind": "office"}]},
    )
    staff = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=201,
        json={
            "first_name": "Staff",
            "account_id": acc["id"],
            "phones": [{"number": "02188776655 داخلی 12", "kind": "office"}],
        },
    )
    found = await api.call("GET", "/api/v1/lookup?number=%2B982188776655", admin)
    assert found["shared"] is True
    assert [(m["entity_type"], m["id"], m["extension"]) for m in found["matches"]] == [
        ("contact", staff["id"], "12"),
        ("account", acc["id"], None),
    ]


async def test_deal_moves_through_stages_and_winning_closes_it(api):
    admin = await api.actor("admin", "admin")
    pid = await make_pipeline(api.db)
    pipe = await api.call("GET", f"/api/v1/pipelines/{pid}", admin)
    stages = {s["name"]: s["id"] for s in pipe["stages"]}
    deal = await api.call(
        "POST", "/api/v1/deals", admin, expect=201, json={"title": "Big", "amount": "1200000000"}
    )
    assert deal["stage_id"] == stages["Qualify"] and deal["status"] == "open"
    won = await api.call(
        "PATCH", f"/api/v1/deals/{deal['id']}", admin, json={"stage_id": stages["Won"]}
    )
    assert won["status"] == "won" and won["closed_at"]
    other = await make_pipeline(api.db, "Other")
    other_stage = (await api.call("GET", f"/api/v1/pipelines/{other}", admin))["stages"][0]
    bad = await api.call(
        "PATCH",
        f"/api/v1/deals/{deal['id']}",
        admin,
        expect=422,
        json={"stage_id": other_stage["id"]},
    )
    assert bad["errors"][0]["field"] == "stage_id"


async def test_documents_attach_to_a_record_and_download_is_audited(api):
    admin = await api.actor("admin", "admin")
    agent = await api.actor("agent")
    c = await api.call(
        "POST", "/api/v1/contacts", admin, expect=201, json={"first_name": "Doc", "owner_id": None}
    )
    form = aiohttp.FormData()
    form.add_field("file", "قرارداد".encode(), filename="قرارداد.txt", content_type="text/plain")
    doc = await api.call(
        "POST", f"/api/v1/contacts/{c['id']}/documents", admin, expect=201, data=form
    )
    assert doc["size"] == len("قرارداد".encode())
    listed = await api.call("GET", f"/api/v1/contacts/{c['id']}/documents", agent)
    assert [d["id"] for d in listed["items"]] == [doc["id"]]
    resp = await api.client.get(f"/api/v1/documents/{doc['id']}", headers=agent)
    assert resp.status == 200 and (await resp.read()) == "قرارداد".encode()
    audit = await api.call("GET", "/api/v1/audit?action=download", admin)
    assert audit["items"][0]["entity_id"] == doc["id"]


async def test_account_timeline_includes_its_contacts_activities_newest_first(api):
    admin = await api.actor("admin", "admin")
    acc = await api.call("POST", "/api/v1/accounts", admin, expect=201, json={"name": "Co"})
    person = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=201,
        json={"first_name": "P", "account_id": acc["id"]},
    )
    await api.call(
        "POST",
        "/api/v1/activities",
        admin,
        expect=201,
        json={
            "kind": "note",
            "subject": "old",
            "account_id": acc["id"],
            "occurred_at": "2026-01-01T10:00:00Z",
        },
    )
    await api.call(
        "POST",
        "/api/v1/activities",
        admin,
        expect=201,
        json={
            "kind": "meeting",
            "subject": "new",
            "contact_id": person["id"],
            "occurred_at": "2026-02-01T10:00:00Z",
        },
    )
    tl = await api.call("GET", f"/api/v1/accounts/{acc['id']}/timeline?limit=1", admin)
    assert [a["subject"] for a in tl["items"]] == ["new"]
    tl2 = await api.call(
        "GET", f"/api/v1/accounts/{acc['id']}/timeline?limit=1&cursor={tl['next_cursor']}", admin
    )
    assert [a["subject"] for a in tl2["items"]] == ["old"] and tl2["next_cursor"] is None


async def test_task_callback_is_open_until_done(api):
    admin = await api.actor("admin", "admin")
    t = await api.call(
        "POST",
        "/api/v1/activities",
        admin,
        expect=201,
        json={
            "kind": "task",
            "subject": "call back",
            "is_callback": True,
            "due_at": "2026-12-01T09:00:00+03:30",
        },
    )
    assert t["status"] == "open" and t["due_at"] == "2026-12-01T05:30:00+00:00"
    done = await api.call("PATCH", f"/api/v1/activities/{t['id']}", admin, json={"status": "done"})
    assert done["completed_at"]


async def test_same_name_in_the_same_company_is_a_possible_duplicate(api):
    admin = await api.actor("admin", "admin")
    acc = await api.call("POST", "/api/v1/accounts", admin, expect=201, json={"name": "Pars"})
    await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=201,
        json={"first_name": "علی", "last_name": "رضایی", "account_id": acc["id"]},
    )
    dup = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=409,
        json={"first_name": "علي", "last_name": "رضايي", "account_id": acc["id"]},
    )
    assert len(dup["duplicates"]) == 1
    # The same name without a company is a different person as far as we know.
    await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=201,
        json={"first_name": "علی", "last_name": "رضایی"},
    )
    await api.call("POST", "/api/v1/accounts", admin, expect=409, json={"name": "pars"})


async def test_deal_amount_is_shown_in_rial_and_toman_in_the_users_language(api):
    admin = await api.actor("admin", "admin")
    await make_pipeline(api.db)
    deal = await api.call(
        "POST",
        "/api/v1/deals",
        admin,
        expect=201,
        json={"title": "D", "amount": "2500000000", "currency": "IRR"},
    )
    assert deal["amount_display"] == "۲٬۵۰۰٬۰۰۰٬۰۰۰ ریال (۲۵۰٬۰۰۰٬۰۰۰ تومان)"


async def test_deactivated_user_is_logged_out_and_cannot_log_in(api):
    admin = await api.actor("admin", "admin")
    agent = await api.actor("leaver")
    users = await api.call("GET", "/api/v1/users", admin)
    uid = next(u["id"] for u in users["items"] if u["username"] == "leaver")
    await api.call("PATCH", f"/api/v1/users/{uid}", admin, json={"is_active": False})
    resp = await api.client.get("/api/v1/contacts", headers=agent)
    assert resp.status == 401
    resp = await api.client.post(
        "/api/v1/auth/login", json={"username": "leaver", "password": "secret-leaver"}
    )
    assert resp.status == 401


async def test_user_devices_are_asterisk_interfaces_unique_across_users(api):
    admin = await api.actor("admin", "admin")
    body = {
        "username": "a1",
        "password": "long-password",
        "extension": "1001",
        "devices": [
            {"interface": "PJSIP/desk-1001"},
            {"interface": "PJSIP/soft-1001", "kind": "softphone"},
        ],
    }
    user = await api.call("POST", "/api/v1/users", admin, expect=201, json=body)
    assert [d["interface"] for d in user["devices"]] == ["PJSIP/desk-1001", "PJSIP/soft-1001"]
    clash = await api.call(
        "POST",
        "/api/v1/users",
        admin,
        expect=409,
        json={**body, "username": "a2", "devices": [{"interface": "PJSIP/soft-1001"}]},
    )
    assert clash["interfaces"] == ["PJSIP/soft-1001"]
    bad = await api.call(
        "POST",
        "/api/v1/users",
        admin,
        expect=422,
        json={**body, "username": "a3", "devices": [{"interface": "1001"}]},
    )
    assert bad["errors"][0]["field"] == "devices[0].interface"
