"""Several gateway instances behind a load balancer: the events of a user's own (a task
reminder, a dialer card) reach the user on the instance their browser is connected to,
whichever instance produced them (screenpop/presence.py). Two gateways in this process,
one PostgreSQL and a real Redis between them; no PBX."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm.automation import AUTOMATION
from crm.db import Database
from crm.schemas import ActivityIn
from crm.services import records
from crm.services.entities import SPECS
from screenpop.hub import HUB, Hub
from tamas.app import create_app
from tamas.config import Settings
from tests.crm_fixtures import Actor, make_actor
from tests.waiting import eventually, next_frame

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


class Gateway:
    def __init__(self, name: str, client: TestClient) -> None:
        self.name = name
        self.client = client

    @property
    def hub(self) -> Hub:
        return self.client.app[HUB]

    async def login(self, who: Actor) -> str:
        resp = await self.client.post(
            "/api/v1/auth/login",
            json={"username": who.user.username, "password": who.password},
        )
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["token"]
        return token

    async def socket(self, who: Actor) -> Any:
        ws = await self.client.ws_connect("/ws")
        await ws.send_str(json.dumps({"type": "hello", "token": await self.login(who)}))
        await next_frame(ws, "snapshot")
        return ws


@pytest.fixture
async def gateways(db: Database, redis_server, tmp_path: Path) -> AsyncIterator[list[Gateway]]:
    prefix = "p" + uuid.uuid4().hex[:10]
    out = []
    try:
        for name in ("gw-a", "gw-b"):
            settings = Settings(
                data_dir=tmp_path / name,
                database_url=db.url,
                simulate_pbx=False,
                agi_port=0,
                redis_url=redis_server.url,
                redis_prefix=prefix,
                instance_id=name,
                secret_key="push-test-secret-key-shared-by-both-instances-0123456789",
            )
            client = TestClient(TestServer(create_app(settings, db), host="127.0.0.1"))
            await client.start_server()
            out.append(Gateway(name, client))
        yield out
    finally:
        for gw in reversed(out):
            await gw.client.close()


async def test_a_reminder_swept_on_one_instance_reaches_the_agent_connected_to_the_other(
    db: Database, gateways: list[Gateway]
):
    a, b = gateways
    admin = await make_actor(db, "admin", "admin")
    sara = await make_actor(db, "sara")
    ws = await b.socket(sara)
    # a hears from b that sara is connected there
    await eventually(lambda: a.hub.presence is not None and a.hub.presence.elsewhere(sara.user.id))
    async with db.session() as s:
        task = await records.create(
            s,
            admin.principal,
            SPECS["activity"],
            ActivityIn(
                kind="task",
                subject="Call Ali back",
                assignee_id=sara.user.id,
                due_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10),
            ),
            "IR",
        )
    token = await a.login(admin)
    resp = await a.client.post(
        "/api/v1/automation/rules",
        json={"name": "reminders", "kind": "reminders", "config": {"task_minutes_before": 15}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 201, await resp.text()
    rule = await resp.json()
    run = await a.client.app[AUTOMATION].runner.run(rule["id"], "schedule")
    assert run["affected"] == 1, run  # sent (by way of b), not skipped as "not connected"
    reminder = await next_frame(ws, "reminder")
    assert reminder["activity_id"] == task.id and reminder["subject"] == "Call Ali back"
    assert a.hub.stats()["user_events_forwarded"] == 1
    assert b.hub.stats()["user_events_received"] == 1
    await ws.close()


async def test_a_user_connected_nowhere_is_not_counted_as_reached_and_a_leaving_instance_says_so(
    db: Database, gateways: list[Gateway]
):
    a, b = gateways
    sara = await make_actor(db, "sara")
    reza = await make_actor(db, "reza")
    ws = await b.socket(sara)
    await eventually(lambda: a.hub.presence is not None and a.hub.presence.elsewhere(sara.user.id))
    assert not a.hub.push_to_user(reza.user.id, {"type": "reminder"})  # tried again later
    # The same frame, delivered where sara is, numbered in her stream there.
    assert a.hub.push_to_user(sara.user.id, {"type": "dialer.preview", "entry_id": 7})
    card = await next_frame(ws, "dialer.preview")
    assert card["entry_id"] == 7 and isinstance(card["seq"], int)
    # With a second tab open on a, both tabs get the next one.
    here = await a.socket(sara)
    assert a.hub.push_to_user(sara.user.id, {"type": "dialer.preview", "entry_id": 8})
    assert (await next_frame(here, "dialer.preview"))["entry_id"] == 8
    assert (await next_frame(ws, "dialer.preview"))["entry_id"] == 8
    await here.close()
    # Her browser closes: within moments a no longer counts her as reachable.
    await ws.close()
    await eventually(lambda: not a.hub.presence.elsewhere(sara.user.id))  # type: ignore[union-attr]
    # And an instance that shuts down tells the others at once (no waiting for the TTL).
    ws = await b.socket(sara)
    await eventually(lambda: a.hub.presence.elsewhere(sara.user.id))  # type: ignore[union-attr]
    await b.client.close()
    await eventually(lambda: not a.hub.presence.elsewhere(sara.user.id))  # type: ignore[union-attr]
