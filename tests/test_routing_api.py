"""Routing rules over REST (admins edit, versions in the audit log), the dry run over REST
and from the command line, and the admin page; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cti.routing.service import CallInfo
from tests.routing_world import build_world

RULES = "/api/v1/routing/rules"
VIP_TO_OWNER = {
    "name": "VIPs to their owner",
    "conditions": [{"kind": "vip"}],
    "action": {"type": "owner", "max_per_hour": 20},
}


async def _world(api):
    world = await build_world(api.db)
    admin = await api.login("admin", world.admin.password)
    return world, admin


async def test_only_admins_edit_rules_supervisors_read_agents_see_nothing(api):
    world, admin = await _world(api)
    supervisor = await api.login("supervisor", world.supervisor.password)
    agent = await api.login("agent1", world.agent1.password)
    await api.call("GET", RULES, agent, expect=403)
    await api.call("POST", "/api/v1/routing/test", agent, expect=403, json={"number": "0912"})
    await api.call("POST", RULES, supervisor, expect=403, json=VIP_TO_OWNER)
    created = await api.call("POST", RULES, admin, expect=201, json=VIP_TO_OWNER)
    assert (created["position"], created["version"]) == (1, 1)
    listed = await api.call("GET", RULES, supervisor)
    assert [x["id"] for x in listed["items"]] == [created["id"]]
    await api.call("PATCH", f"{RULES}/{created['id']}", supervisor, expect=403, json={"name": "x"})
    await api.call("DELETE", f"{RULES}/{created['id']}", agent, expect=403)
    await api.call("DELETE", f"{RULES}/{created['id']}", admin, expect=204)


async def test_rules_are_validated_with_the_field_and_the_reason(api):
    world, admin = await _world(api)
    bad = await api.call(
        "POST",
        RULES,
        admin,
        expect=422,
        json={
            "name": "bad",
            "conditions": [
                {"kind": "teleport"},
                {"kind": "time", "start": "09:00", "end": "09:00"},
            ],
            "action": {"type": "queue", "queue": "sales, evil"},
        },
    )
    fields = {e["field"] for e in bad["errors"]}
    assert any(f.startswith("conditions[0]") for f in fields)
    assert any(f.startswith("conditions[1]") for f in fields)
    assert any(f.startswith("action") for f in fields)
    refs = await api.call(
        "POST",
        RULES,
        admin,
        expect=422,
        json={
            "name": "refs",
            "conditions": [
                {"kind": "business_hours", "calendar_id": 999},
                {"kind": "owner", "user_ids": [world.agent1.user.id, 999]},
                {"kind": "custom_field", "key": "nope", "value": 1},
                {"kind": "lead_list", "lead_list_ids": [999]},
            ],
            "action": {"type": "team_queue", "team_id": 999},
        },
    )
    assert {(e["field"], e["reason"]) for e in refs["errors"]} == {
        ("conditions[0].calendar_id", "no calendar 999"),
        ("conditions[1].user_ids", "no user 999"),
        ("conditions[2].key", "no custom field 'nope'"),
        ("conditions[3].lead_list_ids", "no lead list 999"),
        ("action.team_id", "no team 999"),
    }
    number = await api.call(
        "POST", RULES, admin, expect=422,
        json={"name": "x", "action": {"type": "external", "number": "0912 12"}},
    )  # fmt: skip
    assert number["errors"][0]["field"] == "action.number"
    ok = await api.call(
        "POST", RULES, admin, expect=201,
        json={"name": "forward", "action": {"type": "external", "number": "۰۹۱۲ ۱۲۳ ۴۵۶۷"}},
    )  # fmt: skip
    assert ok["action"]["number"] == "+989121234567"  # stored normalized


async def test_every_change_is_a_new_version_in_the_audit_log_with_old_and_new_values(api):
    world, admin = await _world(api)
    rule = await api.call("POST", RULES, admin, expect=201, json=VIP_TO_OWNER)
    path = f"{RULES}/{rule['id']}"
    patched = await api.call(
        "PATCH", path, admin,
        json={"action": {"type": "queue", "queue": "vip", "priority": 5}, "enabled": False},
    )  # fmt: skip
    assert patched["version"] == 2 and patched["enabled"] is False
    same = await api.call("PATCH", path, admin, json={"enabled": False})
    assert same["version"] == 2  # nothing changed, no new version
    history = (await api.call("GET", f"{path}/history", admin))["items"]
    assert [h["action"] for h in history] == ["create", "update"]
    assert history[0]["changes"]["conditions"] == [None, [{"kind": "vip", "negate": False}]]
    assert history[1]["user_id"] == world.admin.user.id
    old_action, new_action = history[1]["changes"]["action"]
    assert old_action["type"] == "owner" and old_action["max_per_hour"] == 20
    assert new_action == {"type": "queue", "queue": "vip", "priority": 5}
    assert history[1]["changes"]["enabled"] == [True, False]
    assert history[1]["changes"]["version"] == [1, 2]
    await api.call("DELETE", path, admin, expect=204)
    history = (await api.call("GET", f"{path}/history", admin))["items"]
    assert history[-1]["action"] == "delete"
    assert history[-1]["changes"]["action"] == [new_action, None]
    await api.call("GET", path, admin, expect=404)


async def test_rules_keep_their_order(api):
    _, admin = await _world(api)
    ids = []
    for name in ("a", "b", "c"):
        x = await api.call(
            "POST", RULES, admin, expect=201,
            json={"name": name, "action": {"type": "queue", "queue": name}},
        )  # fmt: skip
        ids.append(x["id"])
    first = await api.call(
        "POST", RULES, admin, expect=201,
        json={"name": "first", "position": 1, "action": {"type": "reject"}},
    )  # fmt: skip

    async def order():
        return [(x["name"], x["position"]) for x in (await api.call("GET", RULES, admin))["items"]]

    assert await order() == [("first", 1), ("a", 2), ("b", 3), ("c", 4)]
    await api.call("PATCH", f"{RULES}/{ids[2]}", admin, json={"position": 2})
    assert await order() == [("first", 1), ("c", 2), ("a", 3), ("b", 4)]
    await api.call("DELETE", f"{RULES}/{first['id']}", admin, expect=204)
    assert await order() == [("c", 1), ("a", 2), ("b", 3)]
    await api.call("POST", f"{RULES}/order", admin, json={"ids": [ids[0], ids[1], ids[2]]})
    assert await order() == [("a", 1), ("b", 2), ("c", 3)]
    await api.call("POST", f"{RULES}/order", admin, expect=422, json={"ids": [ids[0]]})


async def test_calendars_with_jalali_holidays_and_their_use_by_rules(api):
    _w, admin = await _world(api)
    cal = await api.call(
        "POST",
        "/api/v1/routing/calendars",
        admin,
        expect=201,
        json={
            "name": "Tehran office",
            "hours": {"sat": ["08:00-16:00"], "sun": ["08:00-16:00"], "thu": ["08:00-12:00"]},
            "holidays": [{"date": "1405-09-01", "name": "test holiday"}],
        },
    )
    assert cal["holidays"] == [
        {"date": "2026-11-22", "name": "test holiday", "jalali": "1405-09-01"}
    ]
    assert cal["hours"]["fri"] == [] and cal["hours"]["sat"] == ["08:00-16:00"]
    rule = await api.call(
        "POST", RULES, admin, expect=201,
        json={"name": "closed", "conditions": [{"kind": "business_hours", "calendar_id": cal["id"],
              "negate": True}], "action": {"type": "voicemail", "mailbox": "100"}},
    )  # fmt: skip
    busy = await api.call("DELETE", f"/api/v1/routing/calendars/{cal['id']}", admin, expect=409)
    assert busy["rule_ids"] == [rule["id"]]
    patched = await api.call(
        "PATCH", f"/api/v1/routing/calendars/{cal['id']}", admin,
        json={"holidays": [{"date": "2026-03-21", "name": "Nowruz"}]},
    )  # fmt: skip
    assert patched["holidays"] == [{"date": "2026-03-21", "name": "Nowruz"}]
    history = await api.call("GET", f"/api/v1/routing/calendars/{cal['id']}/history", admin)
    assert history["items"][-1]["changes"]["holidays"][0][0]["jalali"] == "1405-09-01"
    await api.call(
        "POST", "/api/v1/routing/calendars", admin, expect=422,
        json={"name": "bad", "holidays": [{"date": "1405-13-40"}]},
    )  # fmt: skip


async def test_dry_run_over_rest_shows_which_rule_matched_and_why_without_storing(api):
    world, admin = await _world(api)
    await api.call(
        "POST", RULES, admin, expect=201,
        json={"name": "new leads", "conditions": [{"kind": "lead_status", "statuses": ["new"]}],
              "action": {"type": "team_queue", "team_id": world.team_id, "priority": 4}},
    )  # fmt: skip
    vip = await api.call("POST", RULES, admin, expect=201, json=VIP_TO_OWNER)
    out = await api.call(
        "POST",
        "/api/v1/routing/test",
        admin,
        json={"number": "+98 935 111 2233", "did": world.did, "at": "2026-11-21T10:00:00"},
    )
    assert out["at"] == "2026-11-21T10:00:00+03:30" and out["timezone"] == "Asia/Tehran"
    assert out["caller"]["record"]["entity_type"] == "contact"
    assert out["caller"]["record"]["owner"]["state"] == "logged_out"
    reasons = out["decision"]["reasons"]
    assert reasons[0]["matched"] is False
    assert reasons[0]["why"] == "no: lead_status no: lead status None, wanted new"
    assert reasons[1]["rule_id"] == vip["id"] and "owner Agent1 is logged_out" in reasons[1]["why"]
    assert out["decision"]["route"] == "queue" and out["decision"]["rule"] == "default"
    assumed = await api.call(
        "POST",
        "/api/v1/routing/test",
        admin,
        json={"number": world.sara, "did": world.did, "assume_available": [world.agent1.user.id]},
    )
    assert assumed["decision"]["rule_id"] == vip["id"]
    assert assumed["variables"]["TAMAS_ROUTE"] == "agent"
    assert assumed["variables"]["TAMAS_CALLER_NAME"] == "سارا احمدی"
    lead = await api.call("POST", "/api/v1/routing/test", admin, json={"number": world.reza})
    assert lead["variables"]["TAMAS_ROUTE_QUEUE"] == "sales"
    assert lead["variables"]["TAMAS_ROUTE_PRIORITY"] == "4"
    decisions = await api.call("GET", "/api/v1/routing/decisions", admin)
    assert decisions["items"] == []  # a dry run stores nothing


async def test_stored_decisions_and_status_are_listed(api):
    from cti.routing import RUNTIME

    world, admin = await _world(api)
    supervisor = await api.login("supervisor", world.supervisor.password)
    service = api.client.app[RUNTIME].service
    call = CallInfo(uniqueid="1795416804.7", caller=world.sara, did=world.did)
    outcome = await service.decide(call)
    service.store(call, outcome)
    await service.flush()
    listed = await api.call("GET", "/api/v1/routing/decisions?call_uid=1795416804.7", supervisor)
    [item] = listed["items"]
    assert item["route"] == "queue" and item["rule_id"] is None and item["fallback"] is False
    assert item["entity_type"] == "contact" and item["entity_id"] == world.contact_id
    assert item["reasons"][-1]["why"].startswith("no rule decided")
    status = await api.call("GET", "/api/v1/routing/status", admin)
    assert status["deadline_ms"] == 300 and status["log"]["written"] == 1
    assert status["decisions"]["decisions"] == 1


async def test_the_admin_page_is_served(api):
    resp = await api.client.get("/admin/routing")
    assert resp.status == 200
    html = await resp.text()
    assert "/api/v1/routing" in html and "Dry run" in html


def test_dry_run_from_the_command_line(db_url, tmp_path):
    import asyncio

    from crm.db import Database

    async def setup():
        db = Database(db_url)
        try:
            world = await build_world(db)
            from tests.routing_world import set_rules

            await set_rules(db, [([{"kind": "vip"}], {"type": "owner"})])
            return world
        finally:
            await db.dispose()

    world = asyncio.run(setup())
    env = {**os.environ, "TAMAS_DATABASE_URL": db_url, "TAMAS_DATA_DIR": str(tmp_path)}

    def tamas(*args):
        return subprocess.run(
            [sys.executable, "-m", "tamas.cli", *args],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip

    proc = tamas("route", "test", world.sara, "--did", world.did, "--at", "2026-11-21T10:00")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "caller: +989351112233 = contact" in out and "سارا احمدی" in out
    assert "owner Agent1 is logged_out: next rule" in out
    assert "route: queue (rule default)" in out
    proc = tamas("route", "test", world.sara, "--did", world.did, "--available", "agent1", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["decision"]["route"] == "agent"
    assert result["variables"]["TAMAS_ROUTE_DIAL"] == "PJSIP/1001&PJSIP/1001b"
    bad = tamas("route", "test", world.sara, "--available", "nobody")
    assert bad.returncode == 2 and "no user 'nobody'" in bad.stderr
    when = tamas("route", "test", world.sara, "--at", "yesterday")
    assert when.returncode == 2 and "--at" in when.stderr


def test_route_test_explains_itself():
    proc = subprocess.run(
        [sys.executable, "-m", "tamas.cli", "route", "test", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and "usage: tamas route test" in proc.stdout
    assert "--did" in proc.stdout and "--available" in proc.stdout
