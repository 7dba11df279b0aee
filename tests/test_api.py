"""The REST API as a client sees it, on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.crm_fixtures import make_pipeline


async def test_every_endpoint_needs_a_valid_token(api):
    resp = await api.client.get("/api/v1/contacts")
    assert resp.status == 401
    resp = await api.client.get("/api/v1/contacts", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401 and (await resp.json())["error"] == "unknown token"
    admin = await api.actor("admin", "admin")
    await api.call("POST", "/api/v1/auth/logout", admin, expect=204)
    resp = await api.client.get("/api/v1/contacts", headers=admin)
    assert (await resp.json())["error"] == "token revoked"


async def test_wrong_password_is_refused_and_audited(api):
    await api.actor("admin", "admin")
    resp = await api.client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "wrong-password"}
    )
    assert resp.status == 401
    admin = await api.login("admin", "secret-admin")
    audit = await api.call("GET", "/api/v1/audit?action=login_failed", admin)
    assert audit["items"][0]["detail"] == {"username": "admin"}


async def test_contact_crud_with_validation_errors_naming_the_field(api):
    admin = await api.actor("admin", "admin")
    bad = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=422,
        json={"first_name": "Ali", "email": "not-an-email", "phones": [{"number": "abc"}]},
    )
    fields = {e["field"] for e in bad["errors"]}
    assert "email" in fields
    created = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        expect=201,
        json={
            "first_name": "علی",
            "last_name": "رضایی",
            "phones": [{"number": "09121234567"}],
            "tags": ["vip"],
            "best_time_to_call": "09:00-12:00",
        },
    )
    assert created["phones"][0]["number"] == "+989121234567"
    assert created["tags"] == ["vip"]
    cid = created["id"]
    patched = await api.call(
        "PATCH", f"/api/v1/contacts/{cid}", admin, json={"last_name": "رضائی", "do_not_call": True}
    )
    assert patched["do_not_call"] is True
    history = await api.call("GET", f"/api/v1/contacts/{cid}/history", admin)
    assert [h["action"] for h in history["items"]] == ["create", "update"]
    assert history["items"][1]["changes"]["last_name"] == ["رضایی", "رضائی"]
    await api.call("DELETE", f"/api/v1/contacts/{cid}", admin, expect=204)
    await api.call("GET", f"/api/v1/contacts/{cid}", admin, expect=404)


async def test_list_filters_sorting_and_cursor_pagination(api):
    admin = await api.actor("admin", "admin")
    for i in range(7):
        await api.call(
            "POST",
            "/api/v1/leads",
            admin,
            expect=201,
            json={
                "first_name": f"L{i}",
                "status": "new" if i % 2 else "contacted",
                "rating": "hot",
            },
        )
    seen = []
    cursor = ""
    while True:
        page = await api.call("GET", f"/api/v1/leads?status=new&limit=2&sort=id{cursor}", admin)
        seen += [x["first_name"] for x in page["items"]]
        if not page["next_cursor"]:
            break
        cursor = "&cursor=" + page["next_cursor"]
    assert seen == ["L1", "L3", "L5"]
    bad = await api.call("GET", "/api/v1/leads?password=1", admin, expect=422)
    assert bad["errors"][0]["field"] == "password"


async def test_agent_sees_phone_numbers_masked_and_cannot_export(api):
    admin = await api.actor("admin", "admin")
    agent = await api.actor("agent1")
    c = await api.call(
        "POST",
        "/api/v1/contacts",
        agent,
        expect=201,
        json={"first_name": "Sara", "phones": [{"number": "09351234567"}]},
    )
    assert c["phones"][0]["number"] == "+98935****567"
    full = await api.call("GET", f"/api/v1/contacts/{c['id']}", admin)
    assert full["phones"][0]["number"] == "+989351234567"
    await api.call("GET", "/api/v1/contacts/export", agent, expect=403)
    await api.call(
        "PATCH",
        f"/api/v1/contacts/{c['id']}",
        agent,
        expect=403,
        json={"phones": [{"number": "09350000000"}]},
    )


async def test_lead_conversion_moves_calls_and_notes_to_the_new_contact_and_deal(api):
    admin = await api.actor("admin", "admin")
    await make_pipeline(api.db)
    lead = await api.call(
        "POST",
        "/api/v1/leads",
        admin,
        expect=201,
        json={"first_name": "Reza", "company": "Pars Co", "phones": [{"number": "09121112233"}]},
    )
    for kind in ("call", "note"):
        await api.call(
            "POST",
            "/api/v1/activities",
            admin,
            expect=201,
            json={"kind": kind, "subject": kind, "lead_id": lead["id"]},
        )
    out = await api.call(
        "POST",
        f"/api/v1/leads/{lead['id']}/convert",
        admin,
        json={"deal": {"title": "First order", "amount": "150000000"}},
    )
    timeline = await api.call("GET", f"/api/v1/contacts/{out['contact_id']}/timeline", admin)
    assert sorted(a["kind"] for a in timeline["items"]) == ["call", "note"]
    assert {a["deal_id"] for a in timeline["items"]} == {out["deal_id"]}
    found = await api.call("GET", "/api/v1/lookup?number=%2B989121112233", admin)
    assert [(m["entity_type"], m["id"]) for m in found["matches"]] == [
        ("contact", out["contact_id"])
    ]
    deal = await api.call("GET", f"/api/v1/deals/{out['deal_id']}", admin)
    assert deal["amount"] == "150000000.00" and deal["currency"] == "IRR"


async def test_openapi_document_lists_entity_routes_with_schemas(api):
    resp = await api.client.get("/api/v1/openapi.json")
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    post = doc["paths"]["/api/v1/contacts"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ContactIn"
    )
    assert "ContactIn" in doc["components"]["schemas"]


async def test_openapi_documents_the_body_of_every_route_that_reads_one(api):
    doc = await (await api.client.get("/api/v1/openapi.json")).json()

    def body_of(method: str, path: str) -> dict:
        return doc["paths"][path][method]["requestBody"]

    def schema_name(method: str, path: str) -> str:
        ref = body_of(method, path)["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[1]

    assert schema_name("post", "/api/v1/calls/click-to-call") == "ClickToCallIn"
    assert schema_name("post", "/api/v1/contacts/{id}/merge") == "MergeIn"
    assert schema_name("post", "/api/v1/routing/test") in doc["components"]["schemas"]
    run = body_of("post", "/api/v1/automation/rules/{id}/run")
    assert run["required"] is False  # the body is optional there
    upload = body_of("post", "/api/v1/contacts/{id}/documents")["content"]
    assert upload["multipart/form-data"]["schema"]["required"] == ["file"]
    assert "requestBody" not in doc["paths"]["/api/v1/auth/logout"]["post"]


async def test_merge_with_a_body_that_is_not_a_list_of_ids_is_refused_clearly(api):
    admin = await api.actor("admin", "admin")
    keep = await api.call("POST", "/api/v1/contacts", admin, expect=201, json={"first_name": "Ali"})
    path = f"/api/v1/contacts/{keep['id']}/merge"
    for bad, field in (
        ({"duplicate_ids": "7"}, "duplicate_ids"),
        ({"duplicate_ids": ["7"]}, "duplicate_ids[0]"),
        ({"duplicate_ids": []}, "duplicate_ids"),
        ({"ids": [7]}, "ids"),
    ):
        out = await api.call("POST", path, admin, expect=422, json=bad)
        assert field in {e["field"] for e in out["errors"]}, (bad, out)
    out = await api.call("POST", path, admin, expect=422, data=b"{not json")
    assert out["errors"] == [{"field": "body", "reason": "not valid JSON"}]
