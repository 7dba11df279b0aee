"""The screen-pop websocket against the simulated PBX over real sockets: who gets which pop,
with which customer summary, and how the stream survives reloads, reconnects and slow
clients (docs/websocket.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from crm.db import Database
from crm.models import Activity, ApiToken, Role, Stage, Team
from crm.schemas import AccountIn, ActivityIn, CaseIn, ContactIn, DealIn, LeadIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from cti.api import CONTROL
from cti.domain_events import AgentStateChanged
from cti.envelope import PbxEvent
from cti.simulator import Agent, PbxConfig, QueueConfig, SimulatedPbx
from screenpop.hub import HUB
from tamas.app import BUS, create_app
from tamas.config import Settings, WsSettings
from tests.crm_fixtures import Actor, Api, make_actor, make_pipeline
from tests.simulated import simulator_ami

TIME_SCALE = 0.02  # one simulated second = 20 ms
ALI = "09121234567"  # a known contact with everything a pop shows
MARYAM = "09125550000"  # a contact, a lead and an account share this number
HASSAN = "09127770000"  # reza's customer
STRANGER = "09141112233"  # nobody


def lab(ring: float = 1.0, timeout: float = 600.0) -> PbxConfig:
    """sara (1001) and reza (1002) in the ring-all queue ``sales`` (sara answers first),
    nima (1003) alone in ``support``, mask (1009) alone in ``audit``."""
    return PbxConfig(
        tech="PJSIP",
        agents=[
            Agent("1001", ring_seconds=ring),
            Agent("1002", ring_seconds=ring * 4),
            Agent("1003", ring_seconds=ring),
            Agent("1009", ring_seconds=ring),
        ],
        queues=[
            QueueConfig("sales", ["1001", "1002"], strategy="ringall", timeout=timeout),
            QueueConfig("support", ["1003"], timeout=timeout),
            QueueConfig("audit", ["1009"], timeout=timeout),
        ],
    )


@dataclass
class World:
    pbx: SimulatedPbx
    app: Any
    client: TestClient
    api: Api
    db: Database
    people: dict[str, Actor]
    records: dict[str, int]
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def hub(self) -> Any:
        return self.app[HUB]

    async def token(self, who: str) -> str:
        if who not in self.tokens:
            headers = await self.api.login(who, self.people[who].password)
            self.tokens[who] = headers["Authorization"][7:]
        return self.tokens[who]

    def uid(self, who: str) -> int:
        return self.people[who].user.id

    async def connect(self, who: str | None = None, **hello: Any) -> Ws:
        token = await self.token(who) if who is not None else None
        ws = Ws(await self.client.ws_connect("/ws", autoping=True))
        if token is not None:
            await ws.send({"type": "hello", "token": token, **hello})
        return ws

    async def join(self, who: str, **hello: Any) -> tuple[Ws, dict[str, Any], dict[str, Any]]:
        """Connect, say hello; the welcome and the snapshot (or first replayed frame)."""
        hello.setdefault("last_seq", None)
        hello.setdefault("epoch", None)
        ws = await self.connect(who, **hello)
        welcome = await ws.recv()
        assert welcome["type"] == "welcome", welcome
        ws.last_seq = welcome["seq"]
        if welcome["resumed"]:
            return ws, welcome, {}
        snapshot = await ws.recv()
        assert snapshot["type"] == "snapshot" and snapshot["seq"] == welcome["seq"]
        return ws, welcome, snapshot


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class Ws:
    """A test client that checks the per-user seq runs 1 by 1 on every frame it reads."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.last_seq: int | None = None
        self.seen: list[dict[str, Any]] = []

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(obj if isinstance(obj, str) else json.dumps(obj))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            raise Closed(self.ws.close_code, msg.extra or "")
        assert msg.type == WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        if "seq" in frame and frame["type"] not in ("welcome", "snapshot"):
            if self.last_seq is not None:
                assert frame["seq"] == self.last_seq + 1, (frame, self.last_seq)
            self.last_seq = frame["seq"]
        self.seen.append(frame)
        return frame

    async def until(self, pred: Any, timeout: float = 8.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if pred(frame):
                    return frame

    async def next_of(self, kind: str, timeout: float = 8.0, **match: Any) -> dict[str, Any]:
        return await self.until(
            lambda f: f["type"] == kind and all(f.get(k) == v for k, v in match.items()), timeout
        )

    async def closed(self, timeout: float = 8.0) -> Closed:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)
        except Closed as exc:
            return exc
        raise AssertionError("not closed")

    async def close(self) -> None:
        await self.ws.close()


async def _wait_for(predicate: Any, timeout: float = 8.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            result = await predicate()
            if result:
                return result
            await asyncio.sleep(0.02)


# --- the world ---------------------------------------------------------------------------------


async def _people(db: Database) -> dict[str, Actor]:
    async with db.session() as s:
        sales = Team(name="Sales", queue="sales")
        support = Team(name="Support", queue="support")
        s.add_all([sales, support])
        await s.flush()
        sales_id, support_id = sales.id, support.id
        s.add(
            Role(
                name="masked_agent",
                scope="own",
                see_unassigned=True,
                permissions={
                    e: ["view"] for e in ("contact", "account", "lead", "deal", "case", "activity")
                },
                masked_fields={"contact": ["satisfaction", "lifecycle_stage", "tags", "phones"]},
            )
        )
    people = {
        "admin": await make_actor(db, "admin", "admin"),
        "sara": await make_actor(db, "sara", team_ids=[sales_id], devices=["PJSIP/1001"]),
        "reza": await make_actor(db, "reza", team_ids=[sales_id], devices=["PJSIP/1002"]),
        "nima": await make_actor(db, "nima", team_ids=[support_id], devices=["PJSIP/1003"]),
        "boss": await make_actor(db, "boss", "supervisor", team_ids=[sales_id]),
        "sue": await make_actor(db, "sue", "supervisor", team_ids=[support_id]),
        "mask": await make_actor(db, "mask", "masked_agent", devices=["PJSIP/1009"]),
    }
    return people


async def _customers(db: Database, people: dict[str, Actor]) -> dict[str, int]:
    admin = people["admin"].principal
    sara, reza = people["sara"].user.id, people["reza"].user.id
    pipeline = await make_pipeline(db)
    out: dict[str, int] = {}
    async with db.session() as s:
        stages = {
            st.name: st.id
            for st in await s.scalars(select(Stage).where(Stage.pipeline_id == pipeline))
        }

        async def create(kind: str, data: Any) -> int:
            return int((await records.create(s, admin, SPECS[kind], data, "IR")).id)

        acme = await create("account", AccountIn(name="Acme", owner_id=sara))
        ali = await create(
            "contact",
            ContactIn(
                first_name="Ali",
                last_name="Rezaei",
                account_id=acme,
                owner_id=sara,
                tags=["gold", "wholesale"],
                is_vip=True,
                lifecycle_stage="customer",
                satisfaction=8,
                preferred_channel="phone",
                best_time_to_call="09:00-12:00",
                language="fa",
                phones=[PhoneIn(number=ALI)],
            ),
        )
        out.update(acme=acme, ali=ali)
        out["renewal"] = await create(
            "deal",
            DealIn(
                title="Renewal",
                pipeline_id=pipeline,
                stage_id=stages["Proposal"],
                amount=120_000_000,
                contact_id=ali,
            ),
        )
        out["acme_deal"] = await create(
            "deal",
            DealIn(
                title="Acme expansion",
                pipeline_id=pipeline,
                stage_id=stages["Qualify"],
                amount="99.5",
                account_id=acme,
            ),
        )
        out["won"] = await create(
            "deal",
            DealIn(
                title="Last year",
                pipeline_id=pipeline,
                stage_id=stages["Won"],
                amount=5,
                status="won",
                contact_id=ali,
            ),
        )
        out["invoice"] = await create(
            "case", CaseIn(subject="Invoice", priority="high", status="open", contact_id=ali)
        )
        out["closed_case"] = await create(
            "case", CaseIn(subject="Old problem", status="closed", contact_id=ali)
        )
        base = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
        for day in range(7):
            out[f"note{day}"] = await create(
                "activity",
                ActivityIn(
                    kind="note",
                    subject=f"note {day}",
                    contact_id=ali,
                    occurred_at=base + dt.timedelta(days=day),
                ),
            )
        out["maryam"] = await create(
            "contact",
            ContactIn(first_name="Maryam", last_name="Karimi", phones=[PhoneIn(number=MARYAM)]),
        )
        out["maryam_lead"] = await create(
            "lead",
            LeadIn(first_name="Maryam", company="Karimi Co", phones=[PhoneIn(number=MARYAM)]),
        )
        out["shop"] = await create(
            "account", AccountIn(name="Karimi Shop", phones=[PhoneIn(number=MARYAM)])
        )
        out["hassan"] = await create(
            "contact",
            ContactIn(
                first_name="Hassan",
                owner_id=reza,
                lifecycle_stage="lead",
                phones=[PhoneIn(number=HASSAN)],
            ),
        )
    return out


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> Any:
    made: list[World] = []

    async def make(config: PbxConfig | None = None, before: Any = None, **ws: Any) -> World:
        pbx = SimulatedPbx(config=config or lab(), time_scale=TIME_SCALE)
        await pbx.start()
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=db.url,
            simulate_pbx=False,
            agi_port=0,
            ami=[simulator_ami(pbx, ping_interval=0.5, action_timeout=2)],
            ws=WsSettings(**{"revalidate_seconds": 0.3, "hello_timeout": 3.0, **ws}),
        )
        people = await _people(db)
        customers = await _customers(db, people)
        if before is not None:
            await before(db, people)
        app = create_app(settings, db)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        w = World(pbx, app, client, Api(client, db), db, people, customers)
        made.append(w)
        link: Any = app[CONTROL].pbxs["lab"].link
        await link.wait_up(5)
        # the queue members are known (agent states arrived) before calls start
        await _wait_for(lambda: asyncio.sleep(0, result=len(w.hub.state.agents) >= 3))
        return w

    try:
        yield make
    finally:
        for w in made:
            await w.client.close()
            await w.pbx.stop()


# --- connecting --------------------------------------------------------------------------------


async def test_hello_without_a_token_is_closed_with_4401(world: Any) -> None:
    w = await world()
    ws = await w.connect()
    await ws.send({"type": "hello", "last_seq": None, "epoch": None})
    closed = await ws.closed()
    assert (closed.code, closed.reason) == (4401, "missing token")


async def test_unknown_token_is_closed_with_4401(world: Any) -> None:
    w = await world()
    ws = await w.connect()
    await ws.send({"type": "hello", "token": "not-a-token"})
    closed = await ws.closed()
    assert (closed.code, closed.reason) == (4401, "unknown token")


async def test_expired_token_is_closed_with_4401(world: Any) -> None:
    w = await world()
    token = await w.token("sara")
    async with w.db.session() as s:
        await s.execute(
            update(ApiToken)
            .where(ApiToken.user_id == w.uid("sara"))
            .values(expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        )
    ws = await w.connect()
    await ws.send({"type": "hello", "token": token})
    closed = await ws.closed()
    assert (closed.code, closed.reason) == (4401, "token expired")


async def test_revoked_token_is_refused_at_hello_and_closes_an_open_socket(world: Any) -> None:
    w = await world()
    token = await w.token("sara")
    ws, _, _ = await w.join("sara")
    await w.api.call(
        "POST", "/api/v1/auth/logout", {"Authorization": f"Bearer {token}"}, expect=204
    )
    closed = await ws.closed(timeout=5)  # at the next revalidation (0.3 s here)
    assert (closed.code, closed.reason) == (4401, "token revoked")
    again = await w.connect()
    await again.send({"type": "hello", "token": token})
    closed = await again.closed()
    assert (closed.code, closed.reason) == (4401, "token revoked")


async def test_deactivated_user_is_closed_with_4403(world: Any) -> None:
    w = await world()
    token = await w.token("sara")
    ws, _, _ = await w.join("sara")
    admin = {"Authorization": f"Bearer {await w.token('admin')}"}
    await w.api.call("PATCH", f"/api/v1/users/{w.uid('sara')}", admin, json={"is_active": False})
    closed = await ws.closed(timeout=5)
    assert closed.code in (4401, 4403)  # deactivation may revoke the tokens too
    again = await w.connect()
    await again.send({"type": "hello", "token": token})
    assert (await again.closed()).code in (4401, 4403)


async def test_no_hello_in_time_is_closed_with_4408(world: Any) -> None:
    w = await world(hello_timeout=0.3)
    ws = await w.connect()
    closed = await ws.closed()
    assert (closed.code, closed.reason) == (4408, "no hello within 0.3 s")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        json.dumps({"type": "subscribe", "token": "x"}),
        json.dumps({"type": "hello", "token": "x", "last_seq": "7"}),
        json.dumps([1, 2]),
    ],
)
async def test_malformed_hello_is_closed_with_4400(world: Any, frame: str) -> None:
    w = await world()
    ws = await w.connect()
    await ws.send(frame)
    closed = await ws.closed()
    assert closed.code == 4400 and closed.reason.startswith("malformed hello: ")


async def test_token_in_the_authorization_header_is_accepted(world: Any) -> None:
    w = await world()
    token = await w.token("sara")
    raw = await w.client.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    ws = Ws(raw)
    await ws.send({"type": "hello", "last_seq": None, "epoch": None})
    welcome = await ws.recv()
    assert welcome["type"] == "welcome" and welcome["user"]["username"] == "sara"
    assert (await ws.recv())["type"] == "snapshot"


async def test_welcome_says_who_the_user_is_and_ping_gets_pong(world: Any) -> None:
    w = await world()
    ws, welcome, snapshot = await w.join("boss")
    assert welcome["user"] == {
        "id": w.uid("boss"),
        "username": "boss",
        "full_name": "Boss",
        "role": "supervisor",
        "language": "fa",
        "team_ids": welcome["user"]["team_ids"],
    }
    assert len(welcome["user"]["team_ids"]) == 1
    assert welcome["epoch"] == w.hub.epoch and welcome["resumed"] is False
    assert {q["queue"] for q in snapshot["queues"]} == {"sales"}
    assert snapshot["links"] == [{"pbx": "lab", "state": "up"}]
    await ws.send({"type": "ping"})
    assert await ws.next_of("pong") == {"type": "pong"}


# --- pops --------------------------------------------------------------------------------------


async def test_pop_arrives_while_ringing_with_the_customer_summary(world: Any) -> None:
    w = await world()
    sara, _, _ = await w.join("sara")
    call = w.pbx.inbound_call(ALI, "Ali", did="02188776655", queue="sales", talk=5)
    pop = await sara.next_of("pop")
    assert pop["state"] == "ringing"
    assert pop["direction"] == "inbound" and pop["queue"] == "sales" and pop["did"] == "02188776655"
    assert pop["number"]["raw"] is None and pop["number"]["masked"] is True  # agents: masked
    assert pop["number"]["e164"] == "+98912****567"
    assert pop["unknown"] is False and pop["more_matches"] == 0
    assert pop["wait_seconds"] >= 0 and pop["started_at"] > 0
    [m] = pop["matches"]
    r = w.records
    assert m["type"] == "contact" and m["id"] == r["ali"] and m["name"] == "Ali Rezaei"
    assert m["account"] == {"id": r["acme"], "name": "Acme"}
    assert m["owner"] == {"id": w.uid("sara"), "name": "Sara"}
    assert m["tags"] == ["gold", "wholesale"] and m["vip"] is True
    assert m["lifecycle_stage"] == "customer" and m["satisfaction"] == 8
    assert m["open_deals"] == [
        {
            "id": r["acme_deal"],
            "name": "Acme expansion",
            "value": "99.50",
            "currency": "IRR",
            "stage": "Qualify",
        },
        {
            "id": r["renewal"],
            "name": "Renewal",
            "value": "120000000",
            "currency": "IRR",
            "stage": "Proposal",
        },
    ]
    assert m["open_cases"] == [
        {"id": r["invoice"], "subject": "Invoice", "priority": "high", "status": "open"}
    ]
    assert [a["subject"] for a in m["recent"]] == [f"note {d}" for d in (6, 5, 4, 3, 2)]
    assert m["recent"][0]["occurred_at"] == dt.datetime(2026, 11, 7, 9, tzinfo=dt.UTC).timestamp()
    assert m["preferred_channel"] == "phone" and m["best_time_to_call"] == "09:00-12:00"
    assert m["do_not_call"] is False and m["language"] == "fa"
    assert m["url"] == f"/app#/contact/{r['ali']}" and m["in_scope"] is True
    # then the answer, then the end, with the wrap-up
    update_ = await sara.next_of("pop.update")
    assert update_["state"] == "answered" and update_["answered_by"]["id"] == w.uid("sara")
    await call.wait_finished(10)
    close = await sara.next_of("pop.close")
    ended = await sara.next_of("call.ended")
    assert close["reason"] == "ended" and ended["answered"] is True
    assert ended["activity_id"] is not None and close["activity_id"] == ended["activity_id"]
    assert ended["talk_seconds"] > 0


async def test_agent_gets_only_their_own_pops(world: Any) -> None:
    w = await world()
    sara, _, _ = await w.join("sara")
    nima, _, _ = await w.join("nima")
    w.pbx.inbound_call(ALI, "Ali", queue="support", talk=2)
    pop = await nima.next_of("pop")
    assert pop["matches"][0]["id"] == w.records["ali"]
    await nima.next_of("call.ended")
    await sara.send({"type": "ping"})
    await sara.next_of("pong")
    types = {f["type"] for f in sara.seen}
    assert not types & {"pop", "pop.update", "pop.close", "call.ended", "call.live", "queue.stats"}
    # nothing about nima either: agents see only themselves
    assert all(f["agent"]["id"] == w.uid("sara") for f in sara.seen if f["type"] == "agent.state")


async def test_supervisor_gets_their_teams_queues_and_agents_not_other_teams(world: Any) -> None:
    w = await world()
    boss, _, snap = await w.join("boss")
    assert {a["agent"]["id"] for a in snap["agents"]} == {w.uid("sara"), w.uid("reza")}
    w.pbx.inbound_call(STRANGER, "", queue="support", talk=50)
    w.pbx.inbound_call(ALI, "Ali", queue="sales", talk=50)
    live = await boss.next_of("call.live")
    assert live["queue"] == "sales"
    await boss.until(lambda f: f["type"] == "call.gone")
    await asyncio.sleep(0.3)
    await boss.send({"type": "ping"})
    await boss.next_of("pong")
    queues = {f["queue"] for f in boss.seen if f["type"] == "queue.stats"}
    agents = {f["agent"]["id"] for f in boss.seen if f["type"] == "agent.state"}
    calls = {f.get("queue") for f in boss.seen if f["type"] == "call.live"}
    assert queues == {"sales"} and calls == {"sales"}
    assert agents <= {w.uid("sara"), w.uid("reza")} and w.uid("nima") not in agents
    assert not any(f["type"].startswith("pop") for f in boss.seen)


async def test_admin_gets_every_queue_agent_and_call(world: Any) -> None:
    w = await world()
    admin, _, snap = await w.join("admin")
    assert {q["queue"] for q in snap["queues"]} == {"sales", "support", "audit"}
    assert {a["agent"]["id"] for a in snap["agents"]} >= {
        w.uid("sara"),
        w.uid("reza"),
        w.uid("nima"),
    }
    # calls of a second or so: the live list shows a call's latest picture every 0.1 s
    w.pbx.inbound_call(STRANGER, "", queue="support", talk=50)
    w.pbx.inbound_call(ALI, "Ali", queue="sales", talk=50)

    async def both() -> bool:
        calls = {f.get("queue") for f in admin.seen if f["type"] == "call.live"}
        queues = {f["queue"] for f in admin.seen if f["type"] == "queue.stats"}
        return calls >= {"sales", "support"} and queues >= {"sales", "support"}

    async def pump() -> None:
        while not await both():
            await admin.recv()

    await asyncio.wait_for(pump(), 8)


async def test_queue_figures_reach_the_wallboard(world: Any) -> None:
    w = await world()
    boss, _, _ = await w.join("boss")
    for ext in ("1001", "1002"):  # the caller waits 0.8 s: long enough for the wallboard
        w.pbx.state.db[f"lab/ring/{ext}"] = "40"
    call = w.pbx.inbound_call(ALI, "Ali", queue="sales", talk=1)
    waiting = await boss.until(lambda f: f["type"] == "queue.stats" and f["waiting"] == 1)
    assert waiting["callers"][0]["number"]["e164"] == "+989121234567"
    assert waiting["offered"] == 1 and waiting["day"]
    await call.wait_finished(10)
    done = await boss.until(
        lambda f: f["type"] == "queue.stats" and f["answered"] == 1 and f["waiting"] == 0
    )
    assert done["callers"] == [] and done["abandoned"] == 0
    # 40 s of waiting is past the 20 s service level
    assert done["service_level_pct"] == 0.0 and done["avg_wait"] >= 40


async def test_todays_queue_figures_survive_a_restart_from_the_call_log(world: Any) -> None:
    async def calls_logged_today(db: Database, people: dict[str, Actor]) -> None:
        now = dt.datetime.now(dt.UTC)
        async with db.session() as s:
            for i, (wait, talk, answered) in enumerate(
                [(5, 60, True), (30, 120, True), (40, None, False)]
            ):
                s.add(
                    Activity(
                        kind="call",
                        subject="call",
                        pbx="lab",
                        call_uid=f"old-{i}",
                        queue="sales",
                        direction="inbound",
                        started_at=now - dt.timedelta(seconds=1),
                        answered_at=now if answered else None,
                        wait_s=wait,
                        talk_s=talk,
                        disposition="answered" if answered else "abandoned",
                    )
                )

    w = await world(before=calls_logged_today)
    _, _, snap = await w.join("boss")
    [sales] = snap["queues"]
    assert (sales["offered"], sales["answered"], sales["abandoned"]) == (3, 2, 1)
    assert sales["avg_wait"] == 17.5 and sales["avg_talk"] == 90.0
    assert sales["service_level_pct"] == 50.0  # 5 s within 20 s, 30 s not


async def test_unknown_caller_gets_the_create_lead_card(world: Any) -> None:
    w = await world()
    nima, _, _ = await w.join("nima")
    w.pbx.inbound_call(STRANGER, "", queue="support", talk=1)
    pop = await nima.next_of("pop")
    assert pop["unknown"] is True and pop["matches"] == []
    # an unknown number is no CRM data: shown in full, ready to save as a lead
    assert pop["number"] == {"raw": STRANGER, "e164": "+989141112233", "display": "0914 111 2233"}


async def test_several_matches_are_all_offered_best_first(world: Any) -> None:
    w = await world()
    nima, _, _ = await w.join("nima")
    w.pbx.inbound_call(MARYAM, "", queue="support", talk=1)
    pop = await nima.next_of("pop")
    r = w.records
    assert [(m["type"], m["id"]) for m in pop["matches"]] == [
        ("contact", r["maryam"]),
        ("lead", r["maryam_lead"]),
        ("account", r["shop"]),
    ]
    assert pop["unknown"] is False
    # created by the admin, so owned by them: outside an agent's scope, the name is enough
    lead = pop["matches"][1]
    assert lead["name"] == "Maryam" and lead["in_scope"] is False
    assert lead["owner"]["id"] == w.uid("admin") and "open_cases" not in lead


async def test_routing_variables_pick_the_record_over_the_number(world: Any) -> None:
    w = await world()
    nima, _, _ = await w.join("nima")
    w.pbx.inbound_call(
        STRANGER,
        "",
        queue="support",
        talk=1,
        variables={"TAMAS_CONTACT_ID": str(w.records["hassan"])},
    )
    pop = await nima.next_of("pop")
    assert [m["id"] for m in pop["matches"]] == [w.records["hassan"]]


async def test_answer_elsewhere_closes_the_pop_on_the_other_agents(world: Any) -> None:
    w = await world()
    sara, _, _ = await w.join("sara")
    reza, _, _ = await w.join("reza")
    w.pbx.inbound_call(HASSAN, "", queue="sales", talk=3)
    sara_pop = await sara.next_of("pop")
    reza_pop = await reza.next_of("pop")
    assert sara_pop["call_id"] == reza_pop["call_id"]
    # the same lookup serves both; each sees it through their own permissions
    assert reza_pop["matches"][0]["in_scope"] is True and "open_cases" in reza_pop["matches"][0]
    out_of_scope = sara_pop["matches"][0]
    assert out_of_scope["in_scope"] is False and out_of_scope["name"] == "Hassan"
    assert "lifecycle_stage" not in out_of_scope and "recent" not in out_of_scope
    assert (await sara.next_of("pop.update"))["state"] == "answered"
    close = await reza.next_of("pop.close")
    assert close["reason"] == "answered_elsewhere"
    assert close["answered_by"] == {
        "id": w.uid("sara"),
        "name": "Sara",
        "key": f"user:{w.uid('sara')}",
    }
    assert w.hub.lookups == 1


async def test_hold_transfer_and_hangup_update_the_pop(world: Any) -> None:
    w = await world()
    sara, _, _ = await w.join("sara")
    nima, _, _ = await w.join("nima")
    w.pbx.state.db["lab/ring/1002"] = "10000"  # reza never picks up this time
    call = w.pbx.inbound_call(ALI, "Ali", queue="sales", talk=400)
    pop = await sara.next_of("pop")
    await sara.next_of("pop.update", state="answered")
    headers = {"Authorization": f"Bearer {await w.token('sara')}"}
    path = f"/api/v1/calls/lab/{pop['call_id']}"
    # sara's phone presses hold (the simulator has no PJSIPNotify: its events, by hand)
    phone = next(c for c in w.pbx.state.channels.values() if c.name.startswith("PJSIP/1001-"))
    w.pbx.engine.chan_ev("Hold", phone, [("MusicClass", "default")])
    assert (await sara.next_of("pop.update"))["state"] == "held"
    w.pbx.engine.chan_ev("Unhold", phone)
    assert (await sara.next_of("pop.update"))["state"] == "unheld"
    await w.api.call(
        "POST", f"{path}/transfer", headers, expect=202, json={"target": "1003", "kind": "blind"}
    )
    gone = await sara.next_of("pop.close")
    assert gone["reason"] == "transferred_away"
    landed = await nima.next_of("pop", call_id=pop["call_id"])
    assert landed["transferred_from"]["id"] == w.uid("sara")
    assert landed["matches"][0]["id"] == w.records["ali"]
    await nima.next_of("pop.update", state="answered")
    nima_headers = {"Authorization": f"Bearer {await w.token('nima')}"}
    await w.api.call("POST", f"{path}/hangup", nima_headers, expect=202)
    await call.wait_finished(10)
    assert (await nima.next_of("pop.close"))["reason"] == "ended"
    ended = await nima.next_of("call.ended")
    assert ended["call_id"] == pop["call_id"]
    # sara talked too: her wrap-up comes with the end of the call
    assert (await sara.next_of("call.ended"))["call_id"] == pop["call_id"]


async def test_ring_that_stops_unanswered_closes_with_no_answer(world: Any) -> None:
    w = await world(lab(ring=10_000, timeout=4))  # nobody answers; the queue rings 4 s
    nima, _, _ = await w.join("nima")
    w.pbx.inbound_call(STRANGER, "", queue="support", agents_answer=False, patience=1000)
    await nima.next_of("pop")
    close = await nima.next_of("pop.close")
    assert close["reason"] == "no_answer" and close["answered_by"] is None


# --- reconnecting ------------------------------------------------------------------------------


async def test_reload_while_ringing_gets_the_ringing_pop_in_the_snapshot(world: Any) -> None:
    w = await world(lab(ring=10_000))
    nima, _, _ = await w.join("nima")
    w.pbx.inbound_call(ALI, "Ali", queue="support", agents_answer=False, patience=1000)
    first = await nima.next_of("pop")
    await nima.close()
    _, welcome, snap = await w.join("nima")  # a page reload: no last_seq
    assert welcome["resumed"] is False
    [pop] = snap["pops"]
    assert pop["call_id"] == first["call_id"] and pop["state"] == "ringing"
    assert pop["matches"] == first["matches"]
    [call] = snap["calls"]
    assert call["state"] == "ringing" and call["ringing"][0]["id"] == w.uid("nima")


async def test_reconnect_with_last_seq_replays_what_was_missed(world: Any) -> None:
    w = await world()
    nima, welcome, _ = await w.join("nima")
    seen = nima.last_seq
    await nima.close()
    w.pbx.inbound_call(ALI, "Ali", queue="support", talk=1)

    async def ended() -> bool:
        session = w.hub.sessions[w.uid("nima")]
        return session.stream.seq > seen and not w.hub.state.calls

    await _wait_for(ended)
    back, again, snap = await w.join("nima", last_seq=seen, epoch=welcome["epoch"])
    assert again["resumed"] is True and snap == {}
    back.last_seq = seen
    replayed = [await back.recv() for _ in range(again["seq"] - seen)]
    assert [f["seq"] for f in replayed] == list(range(seen + 1, again["seq"] + 1))
    types = [f["type"] for f in replayed]
    assert types.index("pop") < types.index("pop.update") < types.index("call.ended")


async def test_a_second_tab_gets_the_same_numbered_stream(world: Any) -> None:
    w = await world()
    one, w1, _ = await w.join("nima")
    two, w2, _ = await w.join("nima")
    assert w1["seq"] == w2["seq"]
    w.pbx.inbound_call(ALI, "Ali", queue="support", talk=1)
    a = await one.next_of("call.ended")
    b = await two.next_of("call.ended")
    assert a == b
    assert [f["seq"] for f in one.seen if "seq" in f and f["type"] != "snapshot"] == [
        f["seq"] for f in two.seen if "seq" in f and f["type"] != "snapshot"
    ]


async def test_too_old_last_seq_or_another_epoch_gets_a_snapshot(world: Any) -> None:
    w = await world(replay_events=3)
    nima, welcome, _ = await w.join("nima")
    seen = nima.last_seq
    await nima.close()
    w.pbx.inbound_call(ALI, "Ali", queue="support", talk=1)
    await _wait_for(
        lambda: asyncio.sleep(0, result=w.hub.sessions[w.uid("nima")].stream.seq > seen + 3)
    )
    await _wait_for(lambda: asyncio.sleep(0, result=not w.hub.state.calls))
    _, again, snap = await w.join("nima", last_seq=seen, epoch=welcome["epoch"])
    assert again["resumed"] is False and snap["seq"] == again["seq"] > seen + 3
    _, other, snap = await w.join("nima", last_seq=again["seq"], epoch="another-boot")
    assert other["resumed"] is False and snap["type"] == "snapshot"


# --- permissions -------------------------------------------------------------------------------


async def test_masked_fields_are_absent_from_the_pop(world: Any) -> None:
    w = await world()
    mask, _, _ = await w.join("mask")
    w.pbx.inbound_call(ALI, "Ali", queue="audit", talk=1)
    pop = await mask.next_of("pop")
    [m] = pop["matches"]
    for hidden in ("satisfaction", "lifecycle_stage", "tags"):
        assert hidden not in m
    assert m["masked"] == ["lifecycle_stage", "satisfaction", "tags"]
    assert m["vip"] is True and m["name"] == "Ali Rezaei"  # the rest is there
    assert pop["number"]["masked"] is True and "0912" not in json.dumps(pop)


# --- slow clients ------------------------------------------------------------------------------


async def test_a_slow_client_does_not_delay_a_fast_one_and_is_dropped_with_4409(
    world: Any,
) -> None:
    w = await world(send_queue=16)
    boss, _, _ = await w.join("boss")
    # sara's socket: a receive buffer of 4 KiB and a client that stops reading after hello
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    port = w.client.server.port
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    slow = await websockets.connect(f"ws://127.0.0.1:{port}/ws", sock=sock, max_queue=1)
    await slow.send(json.dumps({"type": "hello", "token": await w.token("sara")}))
    session = await _wait_for(lambda: asyncio.sleep(0, result=w.hub.sessions.get(w.uid("sara"))))
    await _wait_for(lambda: asyncio.sleep(0, result=session.clients))
    agent = f"user:{w.uid('sara')}"
    bus = w.app[BUS]
    count = 1500
    for i in range(count):
        bus.publish(
            PbxEvent(
                "lab",
                AgentStateChanged(
                    at=1.0 + i,
                    agent=agent,
                    state="paused",
                    pause_reason=f"{i} " + "x" * 2000,
                    queues=("sales",),
                ),
            )
        )
    got = 0
    async with asyncio.timeout(20):
        while got < count:
            frame = await boss.recv()
            if frame["type"] == "agent.state" and (frame["reason"] or "").endswith("x"):
                got += 1
    assert w.hub.dropped >= 1
    # the slow client reads again: what was sent before, then the close frame
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(10):
            while True:
                await slow.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 4409


async def test_gateway_shutdown_closes_sockets_with_1001(world: Any) -> None:
    w = await world()
    nima, _, _ = await w.join("nima")
    closing = asyncio.create_task(nima.closed())  # a browser answers the close frame at once
    await w.hub.shutdown()
    closed = await closing
    assert (closed.code, closed.reason) == (1001, "gateway shutting down")
