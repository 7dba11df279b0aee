"""A gateway with the simulated PBX over a real AMI socket, agents with phones and
customers to call: the world of the dialer tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from crm.db import Database
from crm.models import Activity, DialerEntry, Segment, SegmentMember
from crm.schemas import ContactIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from cti.ami_link import AmiLink
from cti.api import CONTROL
from cti.dialer import DIALER, DialerService
from cti.simulator import PbxConfig, SimulatedPbx
from tamas.app import create_app
from tamas.config import Settings
from tests.crm_fixtures import Actor, Api, make_actor
from tests.simulated import simulator_ami
from tests.waiting import next_frame

TIME_SCALE = 0.02  # one simulated second = 20 ms


@dataclass
class World:
    db: Database
    pbx: SimulatedPbx
    api: Api
    app: Any
    admin: Actor
    agents: dict[str, Actor]
    customers: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)  # name -> national number

    @property
    def dialer(self) -> DialerService:
        return self.app[DIALER]

    @property
    def machine(self) -> Any:
        return self.app[CONTROL].pbxs["lab"].machine

    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    async def headers(self, who: str) -> dict[str, str]:
        """Auth headers of ``who`` (one login per user: password hashing is slow)."""
        if who not in self.tokens:
            actor = self.admin if who == "admin" else self.agents[who]
            self.tokens[who] = await self.api.login(actor.user.username, actor.password)
        return self.tokens[who]

    async def add_customer(self, name: str, number: str, **fields: Any) -> int:
        async with self.db.session() as s:
            rec = await records.create(
                s,
                self.admin.principal,
                SPECS["contact"],
                ContactIn(first_name=name, phones=[PhoneIn(number=number)], **fields),
                "IR",
            )
        self.customers[name] = rec.id
        self.numbers[name] = number
        return int(rec.id)

    async def static_segment(self, name: str, ids: list[int]) -> int:
        async with self.db.session() as s:
            seg = Segment(name=name, entity_type="contact", kind="static", filter={})
            s.add(seg)
            await s.flush()
            s.add_all(SegmentMember(segment_id=seg.id, entity_id=i) for i in ids)
            return int(seg.id)

    async def entries(self, campaign_id: int) -> dict[int, DialerEntry]:
        async with self.db.session() as s:
            rows = await s.scalars(
                select(DialerEntry).where(DialerEntry.campaign_id == campaign_id)
            )
            return {e.entity_id: e for e in rows}

    async def calls(self) -> list[Activity]:
        async with self.db.session() as s:
            return list(
                await s.scalars(
                    select(Activity).where(Activity.kind == "call").order_by(Activity.id)
                )
            )

    async def ws(self, who: str) -> Ws:
        headers = await self.headers(who)
        token = headers["Authorization"].split()[1]
        ws = Ws(await self.api.client.ws_connect("/ws"))
        await ws.send({"type": "hello", "token": token, "last_seq": None, "epoch": None})
        await ws.next_of("snapshot")
        return ws


class Ws:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(json.dumps(obj))

    async def next_of(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        return await next_frame(self.ws, kind, timeout, seen=self.seen)

    async def first(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first frame of ``kind`` this socket got, whenever it came."""
        for frame in self.seen:
            if frame["type"] == kind:
                return frame
        return await self.next_of(kind, timeout)

    async def close(self) -> None:
        await self.ws.close()


async def make_world(db: Database, tmp_path: Path, **dialer: Any) -> tuple[World, Any]:
    pbx = SimulatedPbx(config=PbxConfig(tech="PJSIP"), time_scale=TIME_SCALE)
    await pbx.start()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        agi_port=0,
        dialer={"tick_seconds": 0.2, **dialer},
        ami=[simulator_ami(pbx, ping_interval=0.5, ping_timeout=1.0, action_timeout=3)],
    )
    admin = await make_actor(db, "admin", "admin")
    agents = {
        "sara": await make_actor(db, "sara", devices=["PJSIP/1001"], extension="1001"),
        "reza": await make_actor(db, "reza", devices=["PJSIP/1002"], extension="1002"),
        "mina": await make_actor(db, "mina", devices=["PJSIP/1003"], extension="1003"),
    }
    app = create_app(settings, db)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    link = app[CONTROL].pbxs["lab"].link
    assert isinstance(link, AmiLink)
    await link.wait_up(5)
    world = World(db, pbx, Api(client, db), app, admin, agents)

    async def close() -> None:
        await client.close()
        await pbx.stop()

    return world, close
