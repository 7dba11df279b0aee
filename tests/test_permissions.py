"""What each role may see and do, entity by entity, through the API."""

from __future__ import annotations

import pytest

from crm.models import Activity
from tests.crm_fixtures import make_pipeline

# entity plural -> a valid body for a new record
BODIES = {
    "accounts": {"name": "Acme"},
    "contacts": {"first_name": "Ali"},
    "leads": {"first_name": "Lead"},
    "deals": {"title": "Deal"},
    "cases": {"subject": "Broken"},
    "activities": {"kind": "note", "subject": "hello"},
    "campaigns": {"name": "Spring"},
}
PATCHES = {
    "accounts": {"name": "Acme 2"},
    "contacts": {"first_name": "Ali 2"},
    "leads": {"first_name": "Lead 2"},
    "deals": {"title": "Deal 2"},
    "cases": {"subject": "Broken 2"},
    "activities": {"subject": "hello 2"},
    "campaigns": {"name": "Spring 2"},
}


@pytest.fixture
async def world(api):
    """Two teams; agent a1 and a2 in team A, b1 in team B; a supervisor of team A."""
    admin = await api.actor("admin", "admin")
    await make_pipeline(api.db)
    ta = await api.call("POST", "/api/v1/teams", admin, expect=201, json={"name": "A"})
    tb = await api.call("POST", "/api/v1/teams", admin, expect=201, json={"name": "B"})
    return {
        "admin": admin,
        "a1": await api.actor("a1", team_ids=[ta["id"]]),
        "a2": await api.actor("a2", team_ids=[ta["id"]]),
        "b1": await api.actor("b1", team_ids=[tb["id"]]),
        "sup_a": await api.actor("sup_a", "supervisor", team_ids=[ta["id"]]),
    }


@pytest.mark.parametrize(
    "plural", ["accounts", "contacts", "leads", "deals", "cases", "activities"]
)
async def test_agent_cannot_see_or_change_another_agents_record(api, world, plural):
    rec = await api.call("POST", f"/api/v1/{plural}", world["a2"], expect=201, json=BODIES[plural])
    path = f"/api/v1/{plural}/{rec['id']}"
    await api.call("GET", path, world["a1"], expect=404)
    await api.call("PATCH", path, world["a1"], expect=404, json=PATCHES[plural])
    listed = await api.call("GET", f"/api/v1/{plural}", world["a1"])
    assert rec["id"] not in [x["id"] for x in listed["items"]]
    # The owner may edit; nobody but those allowed may delete.
    await api.call("PATCH", path, world["a2"], json=PATCHES[plural])
    await api.call("DELETE", path, world["a2"], expect=403)
    # The supervisor of the owner's team sees and manages it; another team's agent does not.
    await api.call("GET", path, world["sup_a"])
    await api.call("GET", path, world["b1"], expect=404)
    await api.call("DELETE", path, world["sup_a"], expect=204)


@pytest.mark.parametrize("plural", ["accounts", "contacts", "leads", "deals", "cases"])
async def test_supervisor_does_not_see_other_teams_records(api, world, plural):
    rec = await api.call("POST", f"/api/v1/{plural}", world["b1"], expect=201, json=BODIES[plural])
    await api.call("GET", f"/api/v1/{plural}/{rec['id']}", world["sup_a"], expect=404)
    await api.call("GET", f"/api/v1/{plural}/{rec['id']}", world["admin"])


async def test_agent_cannot_give_a_record_away_to_hide_it(api, world):
    rec = await api.call(
        "POST", "/api/v1/contacts", world["a1"], expect=201, json={"first_name": "Mine"}
    )
    b1 = (await api.call("GET", "/api/v1/users", world["admin"]))["items"]
    b1_id = next(u["id"] for u in b1 if u["username"] == "b1")
    await api.call(
        "PATCH", f"/api/v1/contacts/{rec['id']}", world["a1"], expect=403, json={"owner_id": b1_id}
    )
    still = await api.call("GET", f"/api/v1/contacts/{rec['id']}", world["a1"])
    assert still["owner_id"] != b1_id


@pytest.mark.parametrize("plural", ["campaigns", "lead-lists", "tags", "custom-fields"])
async def test_agent_cannot_create_reference_data(api, world, plural):
    body = {
        "campaigns": {"name": "x"},
        "lead-lists": {"name": "x"},
        "tags": {"name": "x"},
        "custom-fields": {
            "entity_type": "contact",
            "key": "x",
            "field_type": "text",
            "label_en": "X",
            "label_fa": "ایکس",
        },
    }[plural]
    if plural == "tags":
        # agents may create tags (tagging a caller during a call), but not delete them
        tag = await api.call("POST", "/api/v1/tags", world["a1"], expect=201, json=body)
        await api.call("DELETE", f"/api/v1/tags/{tag['id']}", world["a1"], expect=403)
        return
    await api.call("POST", f"/api/v1/{plural}", world["a1"], expect=403, json=body)
    await api.call("POST", f"/api/v1/{plural}", world["admin"], expect=201, json=body)


async def test_only_admins_manage_users_and_read_the_whole_audit_log(api, world):
    body = {"username": "newbie", "password": "long-password", "role": "agent"}
    await api.call("POST", "/api/v1/users", world["a1"], expect=403, json=body)
    await api.call("POST", "/api/v1/users", world["sup_a"], expect=403, json=body)
    await api.call("POST", "/api/v1/users", world["admin"], expect=201, json=body)
    await api.call("GET", "/api/v1/audit", world["a1"], expect=403)
    sup_view = await api.call("GET", "/api/v1/audit", world["sup_a"])
    admin_view = await api.call("GET", "/api/v1/audit", world["admin"])
    assert len(sup_view["items"]) < len(admin_view["items"])


async def test_sensitive_custom_field_is_masked_for_agents(api, world):
    await api.call(
        "POST",
        "/api/v1/custom-fields",
        world["admin"],
        expect=201,
        json={
            "entity_type": "contact",
            "key": "national_id",
            "field_type": "text",
            "label_en": "National ID",
            "label_fa": "کد ملی",
            "sensitive": True,
        },
    )
    rec = await api.call(
        "POST",
        "/api/v1/contacts",
        world["a1"],
        expect=201,
        json={"first_name": "X", "custom": {"national_id": "0012345678"}},
    )
    assert rec["custom"]["national_id"] == "****"
    full = await api.call("GET", f"/api/v1/contacts/{rec['id']}", world["admin"])
    assert full["custom"]["national_id"] == "0012345678"
    await api.call(
        "PATCH",
        f"/api/v1/contacts/{rec['id']}",
        world["a1"],
        expect=403,
        json={"custom": {"national_id": "999"}},
    )
    history = await api.call("GET", f"/api/v1/contacts/{rec['id']}/history", world["a1"])
    assert history["items"][0]["changes"]["custom.national_id"] == ["****", "****"]


async def test_agents_read_callers_numbers_masked_on_the_call_log_as_on_the_record(api, world):
    contact = await api.call(
        "POST",
        "/api/v1/contacts",
        world["a1"],
        expect=201,
        json={"first_name": "Sara", "phones": [{"number": "09121234567"}]},
    )
    assert contact["phones"][0]["number"] == "+98912****567"
    async with api.db.session() as s:
        s.add(
            Activity(
                kind="call",
                contact_id=contact["id"],
                owner_id=contact["owner_id"],
                pbx="lab",
                call_uid="1700000000.1",
                direction="inbound",
                external_number="+989121234567",
                from_number="09121234567",
                to_number="1001",
            )
        )
    path = f"/api/v1/contacts/{contact['id']}/timeline"
    (call,) = (await api.call("GET", path, world["a1"]))["items"]
    assert call["external_number"] == "+98912****567"
    assert call["from_number"] == "****"
    assert call["to_number"] == "1001"  # the agent's own extension is not a customer's number
    (full,) = (await api.call("GET", path, world["sup_a"]))["items"]
    assert full["external_number"] == "+989121234567" and full["from_number"] == "09121234567"
