"""The gateway against the simulated PBX over a real AMI socket: calls land in the CRM,
actions reach the PBX (or are refused), and a dropped link heals without losing calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from crm.models import Activity
from crm.schemas import ContactIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from cti.ami_link import AmiLink
from cti.api import CONTROL
from cti.simulator import PbxConfig, SimulatedPbx
from tamas.app import create_app
from tamas.config import Settings
from tests.crm_fixtures import Api, make_actor
from tests.simulated import simulator_ami
from tests.waiting import eventually

TIME_SCALE = 0.02  # one simulated second = 20 ms


@pytest.fixture
async def gateway(db, tmp_path: Path):
    pbx = SimulatedPbx(config=PbxConfig(tech="PJSIP"), time_scale=TIME_SCALE)
    await pbx.start()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        ami=[simulator_ami(pbx, ping_interval=0.2, ping_timeout=0.5, action_timeout=2)],
    )
    admin = await make_actor(db, "admin", "admin")
    sara = await make_actor(db, "sara", devices=["PJSIP/1001"], extension="1001")
    reza = await make_actor(db, "reza", devices=["PJSIP/1002"], extension="1002")
    async with db.session() as s:
        ali = await records.create(
            s,
            admin.principal,
            SPECS["contact"],
            ContactIn(
                first_name="علی",
                last_name="رضایی",
                owner_id=sara.user.id,
                phones=[PhoneIn(number="09121234567")],
            ),
            "IR",
        )
    app = create_app(settings, db)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    api = Api(client, db)
    control = app[CONTROL]
    await app_link(control).wait_up(5)
    try:
        yield {
            "pbx": pbx,
            "api": api,
            "ali": ali,
            "sara": sara,
            "reza": reza,
            "app": app,
            "control": control,
        }
    finally:
        await client.close()
        await pbx.stop()


def app_link(control) -> AmiLink:
    link = control.pbxs["lab"].link
    assert isinstance(link, AmiLink)
    return link


async def _calls(db) -> list[Activity]:
    async with db.session() as s:
        return list(
            await s.scalars(select(Activity).where(Activity.kind == "call").order_by(Activity.id))
        )


async def test_inbound_call_is_logged_on_the_contact_as_it_happens(gateway, db):
    call = gateway["pbx"].inbound_call("09121234567", "علی رضایی", queue="sales", talk=20)
    await call.wait_answered()

    async def answered_row():
        rows = await _calls(db)
        return rows if rows and rows[0].answered_at else None

    rows = await eventually(answered_row)
    assert rows[0].ended_at is None  # written while the call is still going
    assert rows[0].contact_id == gateway["ali"].id
    await call.wait_finished()

    async def ended_row():
        rows = await _calls(db)
        return rows if rows and rows[0].ended_at else None

    row = (await eventually(ended_row))[0]
    assert row.direction == "inbound" and row.external_number == "+989121234567"
    assert row.agent_id in (gateway["sara"].user.id, gateway["reza"].user.id)
    assert row.disposition == "answered"


async def test_click_to_call_rings_the_agent_then_the_customer_and_lands_on_the_record(gateway, db):
    api = gateway["api"]
    sara = await api.login("sara", gateway["sara"].password)
    out = await api.call(
        "POST",
        "/api/v1/calls/click-to-call",
        sara,
        expect=202,
        json={"entity": "contact", "id": gateway["ali"].id},
    )
    assert out["device"] == "PJSIP/1001"

    async def ended():
        rows = await _calls(db)
        return rows if rows and rows[0].ended_at else None

    row = (await eventually(ended, 10))[0]
    assert row.contact_id == gateway["ali"].id
    assert row.direction == "outbound" and row.agent_id == gateway["sara"].user.id


async def test_do_not_call_customer_is_not_dialled(gateway, db):
    api = gateway["api"]
    admin = await api.login("admin", "secret-admin")
    await api.call(
        "PATCH", f"/api/v1/contacts/{gateway['ali'].id}", admin, json={"do_not_call": True}
    )
    sara = await api.login("sara", gateway["sara"].password)
    err = await api.call(
        "POST",
        "/api/v1/calls/click-to-call",
        sara,
        expect=409,
        json={"entity": "contact", "id": gateway["ali"].id},
    )
    assert "do-not-call" in err["error"]


async def test_actions_on_someone_elses_call_are_refused(gateway, db):
    api = gateway["api"]
    # Long enough to outlive two logins on a loaded machine; the test hangs it up itself.
    call = gateway["pbx"].inbound_call("09121234567", "علی", queue="sales", talk=500)
    await call.wait_answered()
    machine = gateway["control"].pbxs["lab"].machine

    async def live_call():
        return next((c for c in machine.calls.values() if c.agents_talked), None)

    live = await eventually(live_call)
    talker = live.agents_talked[0]
    other = "reza" if talker == f"user:{gateway['sara'].user.id}" else "sara"
    other_headers = await api.login(other, gateway[other].password)
    await api.call("POST", f"/api/v1/calls/lab/{live.call_id}/hangup", other_headers, expect=403)
    await api.call(
        "POST",
        f"/api/v1/calls/lab/{live.call_id}/spy",
        other_headers,
        expect=403,
        json={"mode": "listen"},
    )
    me = "sara" if other == "reza" else "reza"
    mine = await api.login(me, gateway[me].password)
    await api.call("POST", f"/api/v1/calls/lab/{live.call_id}/hangup", mine, expect=202)
    await call.wait_finished()


async def test_link_dropped_mid_call_resyncs_and_the_call_is_logged_once(gateway, db):
    call = gateway["pbx"].inbound_call("09121234567", "علی", queue="sales", talk=40)
    await call.wait_answered()
    link = gateway["control"].pbxs["lab"].link
    gateway["pbx"].drop_connections()
    await asyncio.sleep(0.05)
    await link.wait_up(5)
    assert link.counters.resyncs >= 2
    await call.wait_finished(10)

    async def ended():
        rows = await _calls(db)
        return rows if rows and rows[0].ended_at else None

    rows = await eventually(ended, 10)
    assert len(rows) == 1 and rows[0].contact_id == gateway["ali"].id


async def test_pbx_down_gives_a_clear_error(gateway, db):
    api = gateway["api"]
    await gateway["pbx"].stop()
    link = gateway["control"].pbxs["lab"].link
    await eventually(lambda: asyncio.sleep(0, result=link.state != "up"), 5)
    sara = await api.login("sara", gateway["sara"].password)
    err = await api.call(
        "POST",
        "/api/v1/calls/click-to-call",
        sara,
        expect=503,
        json={"entity": "contact", "id": gateway["ali"].id},
    )
    assert err["error"] == "PBX lab is not connected"


async def test_supervisor_pauses_an_agent_with_a_reason_and_sees_it_live(gateway, db):
    api = gateway["api"]
    admin = await api.login("admin", "secret-admin")
    team = await api.call("POST", "/api/v1/teams", admin, expect=201, json={"name": "Sales"})
    sara_id = gateway["sara"].user.id
    await api.call("PATCH", f"/api/v1/users/{sara_id}", admin, json={"team_ids": [team["id"]]})
    await make_actor(db, "boss", "supervisor", team_ids=[team["id"]], devices=["PJSIP/1009"])
    boss = await api.login("boss", "secret-boss")
    reza = await api.login("reza", gateway["reza"].password)
    # An agent may not pause a colleague; the supervisor of the team may.
    await api.call(
        "POST",
        f"/api/v1/agents/{sara_id}/pause",
        reza,
        expect=403,
        json={"paused": True, "reason": "lunch"},
    )
    await api.call(
        "POST",
        f"/api/v1/agents/{sara_id}/pause",
        boss,
        expect=202,
        json={"paused": True, "reason": "lunch"},
    )

    async def paused():
        live = await api.call("GET", "/api/v1/calls/live", boss)
        agent = live["pbx"]["lab"]["agents"].get(f"user:{sara_id}")
        return agent if agent and agent["state"] == "paused" else None

    agent = await eventually(paused)
    assert agent["pause_reason"] == "lunch"
    # The agent sees only themself in the live view.
    sara = await api.login("sara", gateway["sara"].password)
    mine = await api.call("GET", "/api/v1/calls/live", sara)
    assert list(mine["pbx"]["lab"]["agents"]) == [f"user:{sara_id}"]
    assert "queues" not in mine["pbx"]["lab"]


async def test_agent_logs_into_a_queue_and_out_again(gateway, db):
    api = gateway["api"]
    sara = await api.login("sara", gateway["sara"].password)
    machine = gateway["control"].pbxs["lab"].machine
    agent = f"user:{gateway['sara'].user.id}"

    def member_of(queue):
        async def check():
            state = machine.agents.get(agent)
            return state is not None and queue in state.queues

        return check

    await api.call(
        "POST",
        "/api/v1/agents/me/queues",
        sara,
        expect=202,
        json={"queue": "support", "login": True},
    )
    await eventually(member_of("support"))
    await api.call(
        "POST",
        "/api/v1/agents/me/queues",
        sara,
        expect=202,
        json={"queue": "support", "login": False},
    )

    async def gone():
        return not await member_of("support")()

    await eventually(gone)
    # Static members (queues.conf) cannot be removed over AMI: Asterisk says so, and so do we.
    err = await api.call(
        "POST",
        "/api/v1/agents/me/queues",
        sara,
        expect=502,
        json={"queue": "sales", "login": False},
    )
    assert err["error"] == "PBX lab refused QueueRemove: Member not dynamic"


async def test_a_refusal_from_the_pbx_is_a_clear_error(gateway, db):
    api = gateway["api"]
    sara = await api.login("sara", gateway["sara"].password)
    err = await api.call(
        "POST",
        "/api/v1/agents/me/queues",
        sara,
        expect=502,
        json={"queue": "no-such-queue", "login": True},
    )
    assert err["error"].startswith("PBX lab refused QueueAdd: ")


async def test_call_that_ended_while_the_link_was_deaf_is_closed_after_resync(gateway, db):
    # 5 s of real talk: the call must still be up when the PBX goes deaf below, even on a
    # loaded machine where seeing the answer in the call log takes a while.
    call = gateway["pbx"].inbound_call("09121234567", "علی", queue="sales", talk=250)
    await call.wait_answered()

    async def answered():
        rows = await _calls(db)
        return rows if rows and rows[0].answered_at else None

    await eventually(answered)
    link = app_link(gateway["control"])
    resyncs = link.counters.resyncs
    gateway["pbx"].silent = True  # the PBX stops talking to us: no events, no Ping replies
    await call.wait_finished(20)
    gateway["pbx"].silent = False

    async def ended():
        rows = await _calls(db)
        return rows if rows and rows[0].ended_at else None

    rows = await eventually(ended, 10)
    assert link.counters.resyncs > resyncs
    assert link.counters.heartbeat_failures >= 1
    assert len(rows) == 1 and rows[0].hangup_cause == "vanished during link loss"
    assert not gateway["control"].pbxs["lab"].machine.calls
