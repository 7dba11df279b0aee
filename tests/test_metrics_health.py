"""``/metrics`` (Prometheus text, parsed with Prometheus's own parser) and ``/readyz``
(ready, or 503 with the reason) of a gateway running against the simulated PBX."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from crm.db import Database
from crm.migrate import head_revision
from cti.api import CONTROL
from cti.routing import RUNTIME
from cti.simulator import PbxConfig, SimulatedPbx
from tamas.app import create_app
from tamas.config import Settings
from tests.crm_fixtures import make_actor
from tests.routing_world import agi_call
from tests.simulated import simulator_ami
from tests.waiting import eventually, next_frame

TIME_SCALE = 0.02


@pytest.fixture
async def sqlite_db(sqlite_template: Path, tmp_path: Path):
    path = tmp_path / "tamas.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def pbx():
    sim = SimulatedPbx(config=PbxConfig(tech="PJSIP"), time_scale=TIME_SCALE)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def settings_for(tmp_path: Path, db: Database, pbx: SimulatedPbx | None, **kw: Any) -> Settings:
    ami = []
    if pbx is not None:
        timing = {"ping_interval": 0.2, "ping_timeout": 0.5, "action_timeout": 2}
        ami = [simulator_ami(pbx, reconnect_max_delay=0.3, **timing)]
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        agi_port=0,
        ami=ami,
        **kw,
    )


async def running(settings: Settings, db: Database) -> TestClient:
    client = TestClient(TestServer(create_app(settings, db), host="127.0.0.1"))
    await client.start_server()
    return client


async def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics, name: str, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


async def test_metrics_count_ami_events_calls_pops_routes_and_websocket_clients(
    sqlite_db, pbx, tmp_path
):
    db = sqlite_db
    sara = await make_actor(db, "sara", devices=["PJSIP/1003"], extension="1003")
    client = await running(settings_for(tmp_path, db, pbx), db)
    try:
        link = client.app[CONTROL].pbxs["lab"].link
        await link.wait_up(5)
        before = await scrape(client)
        assert value(before, "tamas_pbx_link_up", pbx="lab") == 1.0
        assert value(before, "tamas_pbx_link_state", pbx="lab", state="up") == 1.0
        assert value(before, "tamas_pbx_link_state", pbx="lab", state="down") == 0.0
        assert value(before, "tamas_pbx_link_held", pbx="lab") == 1.0
        assert value(before, "tamas_open_calls", pbx="lab") == 0.0
        assert value(before, "tamas_websocket_clients") == 0.0

        # Sara's desktop connects; a support call rings her phone (1003) and pops.
        login = await client.post(
            "/api/v1/auth/login", json={"username": "sara", "password": sara.password}
        )
        token = (await login.json())["token"]
        ws = await client.ws_connect("/ws")
        await ws.send_str(json.dumps({"type": "hello", "token": token}))
        assert json.loads((await ws.receive()).data)["type"] == "welcome"
        call = pbx.inbound_call("09121234567", "علی", queue="support", talk=500)
        await call.wait_answered()
        await next_frame(ws, "pop", 5)

        async def during():
            m = await scrape(client)
            return m if value(m, "tamas_open_calls", pbx="lab") == 1.0 else None

        mid = await eventually(during)
        assert value(mid, "tamas_websocket_clients") == 1.0
        assert value(mid, "tamas_websocket_users") == 1.0
        assert value(mid, "tamas_screen_pop_latency_seconds_count") == 1.0
        events_before = value(before, "tamas_ami_events_total", pbx="lab") or 0
        assert (value(mid, "tamas_ami_events_total", pbx="lab") or 0) > events_before > 0
        assert (value(mid, "tamas_bus_events_total", source="local") or 0) > 0
        assert (value(mid, "tamas_event_lag_seconds_count", source="local") or 0) > 0
        assert value(mid, "tamas_bus_queued", subscriber="call-log") is not None
        assert value(mid, "tamas_bus_dropped_total", subscriber="call-log") == 0.0

        # A FastAGI routing decision lands in the route latency histogram.
        agi_port = client.app[RUNTIME].server.port
        result = await agi_call(agi_port, callerid="09351112233")
        assert result.variables["TAMAS_ROUTE"] == "queue"
        after = await scrape(client)
        assert value(after, "tamas_agi_route_seconds_count", route="queue", fallback="false") == 1
        assert value(after, "tamas_agi_route_seconds_bucket", route="queue", fallback="false",
                     le="+Inf") == 1  # fmt: skip
        await ws.close()

        async def gone():
            m = await scrape(client)
            return m if value(m, "tamas_websocket_clients") == 0.0 else None

        await eventually(gone)
    finally:
        await client.close()


async def test_ready_when_the_database_is_at_head_and_the_pbx_link_is_up(sqlite_db, pbx, tmp_path):
    client = await running(settings_for(tmp_path, sqlite_db, pbx), sqlite_db)
    try:
        await client.app[CONTROL].pbxs["lab"].link.wait_up(5)
        resp = await client.get("/readyz")
        assert resp.status == 200
        body = await resp.json()
        assert body == {
            "status": "ready",
            "checks": {"database": "ok", "pbx:lab": "up (held here)"},
        }
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


async def test_not_ready_while_the_pbx_link_is_down_and_ready_again_when_it_is_back(
    sqlite_db, pbx, tmp_path
):
    client = await running(settings_for(tmp_path, sqlite_db, pbx), sqlite_db)
    try:
        link = client.app[CONTROL].pbxs["lab"].link
        await link.wait_up(5)
        port = pbx.port
        await pbx.stop()

        async def not_ready():
            resp = await client.get("/readyz")
            return await resp.json() if resp.status == 503 else None

        body = await eventually(not_ready)
        assert body["status"] == "not ready"
        assert len(body["reasons"]) == 1
        assert body["reasons"][0].startswith("PBX lab: AMI link is ")
        assert body["checks"]["database"] == "ok"

        pbx.port = port
        await pbx.start()

        async def ready():
            resp = await client.get("/readyz")
            return resp.status == 200

        await eventually(ready)
        assert (await client.get("/healthz")).status == 200  # alive all along
    finally:
        await client.close()


async def test_not_ready_on_a_database_that_is_not_at_this_versions_schema(sqlite_db, tmp_path):
    client = await running(settings_for(tmp_path, sqlite_db, None), sqlite_db)
    try:
        path = sqlite_db.url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = 'older'")
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["reasons"] == [
            f"database: schema at older, needs {head_revision()}: run `tamas db upgrade`"
        ]
        with sqlite3.connect(path) as conn:
            conn.execute("DROP TABLE alembic_version")
        body = await (await client.get("/readyz")).json()
        assert body["reasons"] == ["database: unreachable or not migrated (OperationalError)"]
    finally:
        await client.close()


@pytest.mark.redis
async def test_not_ready_when_redis_is_configured_but_out_of_reach(sqlite_db, pbx, tmp_path):
    settings = settings_for(
        tmp_path, sqlite_db, pbx, redis_url="redis://127.0.0.1:1/0", instance_id="gw-x"
    )
    client = await running(settings, sqlite_db)
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["checks"]["redis"].startswith("unreachable (ConnectionError")
        # Without Redis no instance can take the lease, so none links to the PBX.
        assert body["checks"]["pbx:lab"] == "held by no instance"
        assert "PBX lab: no instance holds its AMI link yet" in body["reasons"]
        assert pbx.logins == 0
        m = await scrape(client)
        assert value(m, "tamas_cluster_redis_connected") == 0.0
        assert value(m, "tamas_pbx_link_state", pbx="lab", state="standby") == 1.0
    finally:
        await client.close()


@pytest.mark.redis
async def test_one_instance_with_redis_holds_the_link_and_is_ready(
    sqlite_db, pbx, redis_server, tmp_path
):
    settings = settings_for(
        tmp_path,
        sqlite_db,
        pbx,
        redis_url=redis_server.url,
        instance_id="gw-solo",
        redis_prefix=f"solo{tmp_path.name[-8:]}",
    )
    client = await running(settings, sqlite_db)
    try:

        async def ready():
            resp = await client.get("/readyz")
            return await resp.json() if resp.status == 200 else None

        body = await eventually(ready)
        assert body["checks"] == {"database": "ok", "redis": "ok", "pbx:lab": "up (held here)"}
        m = await scrape(client)
        assert value(m, "tamas_cluster_instance", instance="gw-solo") == 1.0
        assert value(m, "tamas_cluster_redis_connected") == 1.0
    finally:
        await client.close()
    # Shut down cleanly: the lease was given back at once, not left to expire.
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_server.url)
    try:
        assert await redis.get(f"{settings.redis_prefix}:lease:pbx:lab") is None
    finally:
        await redis.aclose()
