"""Two gateway instances (real ``tamas serve`` processes) behind one PBX, with a real
PostgreSQL and Redis: exactly one holds the AMI link, the other still sees every call, and
when the holder is killed the other takes the link over and the call log stays complete:
each call logged once, none left open. Control actions (click-to-call, hangup, pause) sent
to the instance without the link are carried out by the holder, and FastAGI routing there
sees the holder's agent states.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from crm.db import Database
from crm.models import Activity, AuditEntry
from crm.schemas import ContactIn, PhoneIn, TeamIn
from crm.services import records
from crm.services.entities import SPECS
from crm.services.users import create_team
from cti.callstate import VANISHED
from cti.simulator import PbxConfig, SimulatedPbx
from cti.simulator.engine import Request
from tests.cluster_world import SECRET_KEY, Answer, GatewayProcess
from tests.crm_fixtures import make_actor
from tests.routing_world import agi_call, set_rules
from tests.waiting import eventually, next_frame

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

TIME_SCALE = 0.05  # one simulated second = 50 ms: rings and answers are quick
LONG = 100_000.0  # simulated seconds: calls that only end when the test hangs them up
LEASE_TTL = 1.5


@pytest.fixture
async def world(postgres_server, postgres_template, redis_server, tmp_path: Path):
    name = "t_" + uuid.uuid4().hex[:12]
    postgres_server.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    url = postgres_server.url_for(name)
    db = Database(url)
    pbx = SimulatedPbx(config=PbxConfig(tech="PJSIP"), time_scale=TIME_SCALE)
    await pbx.start()
    async with db.session() as s:
        team_id = (await create_team(s, None, TeamIn(name="Support", queue="support"))).id
    admin = await make_actor(db, "admin", "admin")
    # Queue "support" has one member, 1003: sara's phone, so every support call pops at sara.
    sara = await make_actor(
        db, "sara", devices=["PJSIP/1003"], extension="1003", team_ids=[team_id]
    )
    boss = await make_actor(db, "boss", "supervisor", team_ids=[team_id])  # sara's supervisor
    reza = await make_actor(db, "reza")  # an agent of no team
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
    config = {
        "data_dir": str(tmp_path / "data"),
        "database_url": url,
        "redis_url": redis_server.url,
        "redis_prefix": "t" + uuid.uuid4().hex[:10],  # this test's own keys and stream
        "lease_ttl_seconds": LEASE_TTL,
        "secret_key": SECRET_KEY,  # shared: a token from one instance works on the other
        "http_host": "127.0.0.1",
        "simulate_pbx": False,
        "log_level": "INFO",
        "ami": [
            {
                "name": "lab",
                "host": "127.0.0.1",
                "port": pbx.port,
                "username": pbx.username,
                "secret": pbx.secret,
                "ping_interval": 0.5,
                "ping_timeout": 1.0,
                "action_timeout": 2.0,
                "reconnect_max_delay": 1.0,
            }
        ],
    }
    gateways: list[GatewayProcess] = []

    def gateway(instance: str) -> GatewayProcess:
        gw = GatewayProcess(instance, config, tmp_path)
        gateways.append(gw)
        gw.start()
        return gw

    try:
        yield {
            "db": db,
            "pbx": pbx,
            "gateway": gateway,
            "ali": ali,
            "sara": sara,
            "boss": boss,
            "reza": reza,
        }
    finally:
        hung = []  # a gateway that does not stop on SIGTERM fails the test, after the cleanup
        for gw in gateways:
            try:
                await gw.stop()
            except AssertionError as exc:
                hung.append(str(exc))
            gw.save_log()
        await pbx.stop()
        await db.dispose()
        postgres_server.drop_database(name)
        assert not hung, "\n".join(hung)


async def calls(db: Database) -> list[Activity]:
    async with db.session() as s:
        query = select(Activity).where(Activity.kind == "call").order_by(Activity.id)
        return list(await s.scalars(query))


async def row_of(db: Database, call_id: str) -> Activity | None:
    return next((r for r in await calls(db) if r.call_uid == call_id), None)


def hang_up(pbx: SimulatedPbx, call) -> None:
    """The caller hangs up now (what an AMI Hangup of the caller's channel does)."""
    pbx.engine.request(call, Request("hangup", call.legs[0].chan.name))


def sample(metrics, name: str, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


async def holds_link(gw: GatewayProcess) -> bool:
    m = await gw.metrics()
    return sample(m, "tamas_pbx_link_held", pbx="lab") == 1.0 and (
        sample(m, "tamas_pbx_link_up", pbx="lab") == 1.0
    )


async def ready(gw: GatewayProcess) -> dict | None:
    status, body = await gw.readyz()
    return body if status == 200 else None


async def holder_and_standby(world: dict[str, Any]) -> tuple[GatewayProcess, GatewayProcess]:
    """gw-a up and holding the link, then gw-b up (on standby)."""
    a = world["gateway"]("gw-a")
    await a.wait_serving()
    await eventually(lambda: holds_link(a), timeout=20)
    b = world["gateway"]("gw-b")
    await b.wait_serving()
    body = await eventually(lambda: ready(b), timeout=20)
    assert body["checks"]["pbx:lab"] == "held by gw-a"
    return a, b


async def test_the_standby_sees_the_holders_calls_and_takes_over_when_it_is_killed(world):
    pbx = world["pbx"]
    a, b = await holder_and_standby(world)
    assert not await holds_link(b)
    assert len(pbx.sessions) == 1  # one AMI connection: gw-a's

    # Sara's agent desktop is connected to gw-b, the instance without the PBX link.
    http = aiohttp.ClientSession()
    sara = await Desktop.connect(http, b, await b.login("sara"))
    try:
        await _scenario(world, a, b, sara)
    finally:
        await sara.ws.close()
        await http.close()


async def _scenario(world: dict[str, Any], a: GatewayProcess, b: GatewayProcess, sara) -> None:
    db, pbx = world["db"], world["pbx"]
    # A call the holder (gw-a) sees: logged once, by gw-a; the pop reaches sara on gw-b.
    first = pbx.inbound_call("09121234567", "علی رضایی", queue="support", talk=LONG)
    pop = await sara.next_frame("pop")
    await first.wait_answered(10)
    assert pop["call_id"] == first.linkedid and pop["pbx"] == "lab"
    assert pop["caller_name"] == "علی رضایی"
    assert [m["id"] for m in pop["matches"]] == [world["ali"].id]
    before = await eventually(lambda: _answered_row(db, first.linkedid), timeout=10)
    assert before.contact_id == world["ali"].id and before.agent_id == world["sara"].user.id

    async def b_received_the_call() -> bool:
        m = await b.metrics()
        return (sample(m, "tamas_bus_events_total", source="cluster") or 0) >= 2 and (
            sample(m, "tamas_cluster_events_received_total") or 0
        ) >= 2

    await eventually(b_received_the_call, timeout=10)
    m = await b.metrics()
    assert sample(m, "tamas_open_calls", pbx="lab") == 0.0  # gw-b does not hold the link
    assert sample(m, "tamas_websocket_clients") == 1.0
    assert (sample(m, "tamas_screen_pop_latency_seconds_count") or 0) >= 1

    # A second call, answered, then gw-a dies, and the caller hangs up before gw-b can hold
    # the link (gw-a's lease still has at least TTL - TTL/3 to run): nobody sees the hangup.
    second = pbx.inbound_call("09351112233", "", queue="sales", talk=LONG)  # sara is busy
    await second.wait_answered(10)
    await eventually(lambda: _answered_row(db, second.linkedid), timeout=10)
    killed_at = time.time()
    logins = pbx.logins
    a.kill()
    hang_up(pbx, second)
    await second.wait_finished(5)
    assert not await holds_link(b)

    # gw-b takes the link over within seconds: lease expiry, then its next attempt.
    await eventually(lambda: holds_link(b), timeout=LEASE_TTL * 4 + 5)
    took_over = time.time() - killed_at
    assert pbx.logins > logins and len(pbx.sessions) == 1  # gw-b's, gw-a's is gone
    body = await eventually(lambda: ready(b), timeout=20)
    assert body["checks"]["pbx:lab"] == "up (held here)"

    # The first call is still going; it ends now, seen by gw-b only, and sara (still on
    # gw-b, whose socket never dropped) gets the end of her call from gw-b's own link.
    hang_up(pbx, first)
    await first.wait_finished(5)
    ended = await sara.next_frame("call.ended", first.linkedid)
    assert ended["pbx"] == "lab"

    async def both_closed() -> list[Activity] | None:
        rows = await calls(db)
        return rows if len(rows) == 2 and all(r.ended_at for r in rows) else None

    rows = await eventually(both_closed, timeout=15)
    one, two = (next(r for r in rows if r.call_uid == c.linkedid) for c in (first, second))
    # The call that outlived gw-a: one row, updated by gw-b, with everything gw-a knew.
    assert one.contact_id == world["ali"].id
    assert one.agent_id == world["sara"].user.id
    assert one.answered_at == before.answered_at
    assert one.disposition == "answered"
    assert one.hangup_cause != VANISHED
    assert one.ended_at.timestamp() > killed_at
    assert one.talk_s is not None and one.duration_s is not None
    # The call that ended while nobody held the link: closed by gw-b's resync.
    assert two.hangup_cause == VANISHED
    assert two.details["closed_by"] == "resync"
    assert two.disposition == "answered"
    assert killed_at - 1 <= two.ended_at.timestamp() <= killed_at + took_over + 1
    assert two.external_number == "+989351112233"


async def _answered_row(db: Database, call_id: str) -> Activity | None:
    row = await row_of(db, call_id)
    return row if row is not None and row.answered_at else None


class Desktop:
    """An agent desktop's websocket (docs/websocket.md): hello, then frames."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, gw: GatewayProcess, token: str) -> Desktop:
        ws = await http.ws_connect(f"{gw.url}/ws")
        await ws.send_str(json.dumps({"type": "hello", "token": token, "last_seq": None}))
        desktop = cls(ws)
        await desktop.next_frame("welcome")
        return desktop

    async def next_frame(self, kind: str, call_id: str | None = None, limit: float = 15.0):
        try:
            return await next_frame(self.ws, kind, limit, call_id=call_id, seen=self.frames)
        except TimeoutError:
            seen = [(f["type"], f.get("call_id")) for f in self.frames]
            raise AssertionError(f"no {kind} frame for {call_id}; frames: {seen}") from None


# -- control actions and routing on the instance without the link ------------------------------


def sent(pbx: SimulatedPbx, action: str) -> list[dict[str, str]]:
    """The AMI actions of that name the PBX received (from whichever instance)."""
    return [dict(m.items()) for m in pbx.actions if m.get("Action") == action]


async def test_control_actions_sent_to_the_standby_are_carried_out_by_the_link_holder(world):
    db, pbx = world["db"], world["pbx"]
    a, b = await holder_and_standby(world)
    sara = await b.login("sara")

    # Click-to-call through gw-b: placed on the PBX by gw-a, the only AMI session there.
    out = await b.api(
        "POST", "/api/v1/calls/click-to-call", sara, {"entity": "contact", "id": world["ali"].id}
    )
    assert (out.status, out.served_by) == (202, "gw-a"), out.body
    assert out.body["pbx"] == "lab" and out.body["device"] == "PJSIP/1003"
    assert len(pbx.sessions) == 1
    [originate] = sent(pbx, "Originate")
    assert originate["Channel"] == "PJSIP/1003"

    async def outbound_row() -> Activity | None:
        rows = [r for r in await calls(db) if r.direction == "outbound"]
        return rows[0] if rows else None

    row = await eventually(outbound_row, timeout=10)
    assert row.contact_id == world["ali"].id and row.agent_id == world["sara"].user.id

    # Hang up through gw-b a call only gw-a's call-state machine knows.
    call = pbx.inbound_call("09121234567", "علی رضایی", queue="support", talk=LONG)
    await call.wait_answered(10)
    await eventually(lambda: _answered_row(db, call.linkedid), timeout=10)
    path = f"/api/v1/calls/lab/{call.linkedid}/hangup"
    reza = await b.login("reza")
    # The live list on gw-b is gw-a's (its call-state machine), as each user may see it.
    live = (await b.api("GET", "/api/v1/calls/live", sara)).body["pbx"]["lab"]
    assert live["held_by"] == "gw-a" and live["link"] == "up"
    assert [c["call_id"] for c in live["calls"]] == [call.linkedid]
    assert (await b.api("GET", "/api/v1/calls/live", reza)).body["pbx"]["lab"]["calls"] == []
    # Someone else's call: the holder refuses, and gw-b passes the refusal on as it is.
    refused_via_b = await b.api("POST", path, reza)
    refused_at_a = await a.api("POST", path, reza)
    assert refused_via_b.status == 403 and refused_via_b.served_by == "gw-a"
    assert (refused_via_b.status, refused_via_b.body) == (refused_at_a.status, refused_at_a.body)
    assert refused_at_a.served_by is None  # asked of the holder itself: not forwarded
    out = await b.api("POST", path, sara)
    assert (out.status, out.body, out.served_by) == (202, {"ok": True}, "gw-a")
    await call.wait_finished(5)
    # Each action was audited once, by the holder (the refused one not at all).
    async with db.session() as s:
        actions = list(
            await s.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.action.in_(("click_to_call", "hangup")))
                .order_by(AuditEntry.id)
            )
        )
    assert actions == ["click_to_call", "hangup"]


async def test_fastagi_on_the_standby_routes_with_the_holders_agent_states(world):
    db = world["db"]
    # Calls from ali go to his owner, sara, when she is available; else to the queue.
    await set_rules(db, [([], {"type": "owner"})])
    # gw-b starts after gw-a has linked: it learns the states by asking, not from changes.
    a, b = await holder_and_standby(world)

    async def route(gw: GatewayProcess) -> dict[str, str]:
        return (await agi_call(gw.agi_port, callerid="09121234567")).variables

    at_a = await route(a)
    assert at_a["TAMAS_ROUTE"] == "agent" and at_a["TAMAS_ROUTE_DIAL"] == "PJSIP/1003"

    async def routed_like_a() -> dict[str, str] | None:
        at_b = await route(b)
        return at_b if at_b == at_a else None

    await eventually(routed_like_a, timeout=10)

    # Her supervisor pauses her through gw-b: gw-a tells the PBX, and both route alike again.
    boss = await b.login("boss")
    sara_id = world["sara"].user.id
    reza = await b.login("reza")
    pause = {"paused": True, "reason": "lunch"}
    refused = await b.api("POST", f"/api/v1/agents/{sara_id}/pause", reza, pause)
    assert refused == Answer(
        403, {"error": "you may only pause yourself (or your team's agents)"}, "gw-a"
    )
    out = await b.api("POST", f"/api/v1/agents/{sara_id}/pause", boss, pause)
    assert (out.status, out.served_by) == (202, "gw-a"), out.body
    [paused] = sent(world["pbx"], "QueuePause")
    assert (paused["Interface"], paused["Reason"]) == ("PJSIP/1003", "lunch")

    async def queued(gw: GatewayProcess) -> dict[str, str] | None:
        variables = await route(gw)
        return variables if variables["TAMAS_ROUTE"] == "queue" else None

    at_a = await eventually(lambda: queued(a), timeout=10)
    at_b = await eventually(lambda: queued(b), timeout=10)
    assert at_b == at_a


async def test_after_the_holder_dies_control_actions_reach_the_new_holder(world):
    a, b = await holder_and_standby(world)
    sara = await b.login("sara")
    click = {"entity": "contact", "id": world["ali"].id}
    a.kill()
    # Until gw-b takes over, the PBX has no reachable holder: a clear 503 naming it.
    out = await b.api("POST", "/api/v1/calls/click-to-call", sara, click)
    assert out.status == 503 and "PBX lab" in out.body["error"], out.body
    assert not sent(world["pbx"], "Originate")

    await eventually(lambda: holds_link(b), timeout=LEASE_TTL * 4 + 5)
    out = await b.api("POST", "/api/v1/calls/click-to-call", sara, click)
    assert (out.status, out.served_by) == (202, None), out.body  # the holder now: served here
    # A third instance, started now, forwards to the new holder.
    c = world["gateway"]("gw-c")
    await c.wait_serving()
    await eventually(lambda: ready(c), timeout=20)
    out = await c.api("POST", "/api/v1/calls/click-to-call", sara, click)
    assert (out.status, out.served_by) == (202, "gw-b"), out.body
    assert len(sent(world["pbx"], "Originate")) == 2 and len(world["pbx"].sessions) == 1
