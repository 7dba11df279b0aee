"""Serving recordings: the browser's player seeks with HTTP Range, only the people who may
hear a call hear its recording, and every play and download is in the audit log."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from crm.models import Activity, AuditEntry, Recording, Team
from crm.schemas import ContactIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from cti.call_logger import CallLogger
from cti.domain_events import CallEnded, CallUpdated
from cti.envelope import PbxEvent
from recordings.api import RECORDINGS
from tamas.app import create_app
from tamas.config import RecordingSettings, Settings
from tests.ami_trace import TRACES
from tests.crm_fixtures import Api, make_actor

WAV = TRACES / "recording-inbound-answered.wav"
pytestmark = pytest.mark.skipif(not WAV.exists(), reason="asterisk traces not available")


@pytest.fixture
async def world(db, tmp_path: Path):
    spool = tmp_path / "spool"
    spool.mkdir()
    settings = Settings(
        data_dir=tmp_path / "data",
        recordings_dir=tmp_path / "store",
        database_url=db.url,
        simulate_pbx=False,
        recordings=RecordingSettings(spool_dir=spool, stable_seconds=0.2),
    )
    async with db.session() as s:
        team_a, team_b = Team(name="A"), Team(name="B")
        s.add_all([team_a, team_b])
        await s.flush()
        teams = (team_a.id, team_b.id)
    admin = await make_actor(db, "admin", "admin")
    sara = await make_actor(db, "sara", team_ids=[teams[0]])
    reza = await make_actor(db, "reza", team_ids=[teams[0]])
    boss = await make_actor(db, "boss", "supervisor", team_ids=[teams[0]])
    other_boss = await make_actor(db, "otherboss", "supervisor", team_ids=[teams[1]])
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
    service = app[RECORDINGS]
    logger = CallLogger(db)
    actors = {"admin": admin, "sara": sara, "reza": reza, "boss": boss, "otherboss": other_boss}
    tokens: dict[str, dict[str, str]] = {}

    async def h(name: str) -> dict[str, str]:
        """Auth headers of ``name`` (logged in on first use: argon2 is slow on purpose)."""
        if name not in tokens:
            tokens[name] = await api.login(name, actors[name].password)
        return tokens[name]

    async def recorded_call(call_id: str, data: bytes | None, agent=sara) -> Recording:
        """A call answered by ``agent`` from Ali's number, recorded into ``data``."""
        at = time.time() - 100
        source = f"/var/spool/asterisk/monitor/{call_id}.wav"
        events = [
            CallUpdated(at=at, call_id=call_id, changes={"recording": source}),
            CallEnded(
                at=at + 30,
                call_id=call_id,
                direction="inbound",
                external_number="+989121234567",
                answered=True,
                answered_by=f"user:{agent.user.id}",
                started_at=at,
                answered_at=at + 5,
                ended_at=at + 30,
                queue="sales",
                recording=source,
            ),
        ]
        for ev in events:
            await logger.handle(PbxEvent("lab", ev))
            await service.handle(PbxEvent("lab", ev))
        if data is not None:
            path = spool / f"{call_id}.wav"
            path.write_bytes(data)
            os.utime(path, (at, at))
        async with asyncio.timeout(20):
            while True:
                await service.run_due()
                async with db.session() as s:
                    rec = await s.scalar(select(Recording).where(Recording.call_uid == call_id))
                if rec is not None and rec.status not in ("pending", "ingesting"):
                    return rec
                if data is None and rec is not None and rec.attempts:
                    return rec
                await asyncio.sleep(0.05)

    try:
        yield {
            "api": api,
            "h": h,
            "ali": ali,
            "sara": sara,
            "reza": reza,
            "service": service,
            "record": recorded_call,
            "settings": settings,
        }
    finally:
        await client.close()


async def _get(world, path: str, who: str, **headers: str):
    client = world["api"].client
    resp = await client.get(path, headers={**await world["h"](who), **headers})
    return resp, await resp.read()


async def _audits(db, action: str) -> list[AuditEntry]:
    async with db.session() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# -- Range --------------------------------------------------------------------------------


async def test_the_audio_is_served_whole_with_its_type_length_and_etag(world):
    rec = await world["record"]("c1", WAV.read_bytes())
    stored = world["service"].storage.path(rec.storage_key).read_bytes()

    resp, data = await _get(world, f"/api/v1/recordings/{rec.id}/audio", "sara")

    assert resp.status == 200 and data == stored
    assert resp.headers["Content-Type"] == "audio/ogg; codecs=opus"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert int(resp.headers["Content-Length"]) == len(stored) == rec.size
    assert resp.headers["ETag"] == f'"{rec.sha256}"'
    assert resp.headers["Content-Disposition"].startswith("inline")
    assert "no-store" in resp.headers["Cache-Control"]


async def test_range_requests_seek_in_the_player(world):
    rec = await world["record"]("c1", WAV.read_bytes())
    stored = world["service"].storage.path(rec.storage_key).read_bytes()
    size = len(stored)
    url = f"/api/v1/recordings/{rec.id}/audio"

    resp, data = await _get(world, url, "sara", Range="bytes=0-99")
    assert resp.status == 206 and data == stored[:100]
    assert resp.headers["Content-Range"] == f"bytes 0-99/{size}"
    assert resp.headers["Content-Length"] == "100"

    resp, data = await _get(world, url, "sara", Range="bytes=1000-")
    assert resp.status == 206 and data == stored[1000:]
    assert resp.headers["Content-Range"] == f"bytes 1000-{size - 1}/{size}"

    resp, data = await _get(world, url, "sara", Range="bytes=-500")
    assert resp.status == 206 and data == stored[-500:]

    resp, _ = await _get(world, url, "sara", Range=f"bytes={size}-")
    assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{size}"

    # If-Range: a range of another version of the file gets the whole current file.
    resp, data = await _get(world, url, "sara", Range="bytes=0-9", **{"If-Range": '"stale"'})
    assert resp.status == 200 and data == stored
    resp, data = await _get(
        world, url, "sara", Range="bytes=0-9", **{"If-Range": f'"{rec.sha256}"'}
    )
    assert resp.status == 206 and data == stored[:10]


async def test_head_tells_the_size_without_sending_audio_or_auditing(world, db):
    rec = await world["record"]("c1", WAV.read_bytes())
    resp = await world["api"].client.head(
        f"/api/v1/recordings/{rec.id}/audio", headers=await world["h"]("sara")
    )
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == rec.size
    assert await resp.read() == b""
    assert await _audits(db, "recording_play") == []


async def test_the_audio_player_may_use_the_login_cookie(world):
    rec = await world["record"]("c1", WAV.read_bytes())
    token = (await world["h"]("sara"))["Authorization"].split()[1]
    client = world["api"].client
    jar = client.session.cookie_jar
    jar.clear()  # (the logins above left the last user's cookie)
    jar.update_cookies({"tamas_token": token})
    resp = await client.get(f"/api/v1/recordings/{rec.id}/audio", headers={"Range": "bytes=0-1"})
    assert resp.status == 206
    jar.clear()
    resp = await client.get(f"/api/v1/recordings/{rec.id}/audio")
    assert resp.status == 401


# -- permissions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who, allowed",
    [("sara", True), ("reza", False), ("boss", True), ("otherboss", False), ("admin", True)],
)
async def test_only_the_agent_their_supervisor_and_admins_hear_a_call(world, who, allowed):
    rec = await world["record"]("c1", WAV.read_bytes())
    for path in (f"/api/v1/recordings/{rec.id}", f"/api/v1/recordings/{rec.id}/audio"):
        resp, _ = await _get(world, path, who)
        assert resp.status == (200 if allowed else 404), path
    resp, _ = await _get(world, f"/api/v1/activities/{rec.activity_id}/recordings", who)
    assert resp.status == (200 if allowed else 404)
    listed = await world["api"].call("GET", "/api/v1/recordings", await world["h"](who))
    assert [r["id"] for r in listed["items"]] == ([rec.id] if allowed else [])


async def test_an_unassigned_call_is_not_open_to_every_agent(world, db):
    rec = await world["record"]("c1", WAV.read_bytes())
    async with db.session() as s:
        call = await s.get(Activity, rec.activity_id)
        call.agent_id = call.owner_id = None
    resp, _ = await _get(world, f"/api/v1/recordings/{rec.id}/audio", "sara")
    assert resp.status == 404
    resp, _ = await _get(world, f"/api/v1/recordings/{rec.id}/audio", "admin")
    assert resp.status == 200


async def test_the_customer_record_lists_the_recordings_of_its_calls(world):
    ali = world["ali"]
    first = await world["record"]("c1", WAV.read_bytes())
    second = await world["record"]("c2", WAV.read_bytes())
    out = await world["api"].call(
        "GET", f"/api/v1/recordings?entity=contact&entity_id={ali.id}", await world["h"]("sara")
    )
    assert {r["id"] for r in out["items"]} == {first.id, second.id}
    assert all(r["audio_url"] and r["duration_s"] == pytest.approx(5.5) for r in out["items"])
    # Reza may not even see Ali's record.
    await world["api"].call(
        "GET",
        f"/api/v1/recordings?entity=contact&entity_id={ali.id}",
        await world["h"]("reza"),
        expect=404,
    )


async def test_the_calls_on_a_customers_timeline_carry_their_recordings_or_why_not(world):
    ali = world["ali"]
    good = await world["record"]("c1", WAV.read_bytes())
    broken = await world["record"]("c2", b"JUNK" + WAV.read_bytes()[4:])
    path = f"/api/v1/contacts/{ali.id}/timeline"
    out = await world["api"].call("GET", path, await world["h"]("sara"))
    by_call = {i["id"]: i.get("recordings") for i in out["items"] if i["kind"] == "call"}
    assert by_call[good.activity_id] == [
        {
            "id": good.id,
            "status": "stored",
            "duration_s": pytest.approx(5.5),
            "error": None,
            "audio_url": f"/api/v1/recordings/{good.id}/audio",
        }
    ]
    [problem] = by_call[broken.activity_id]
    assert problem["status"] == "corrupt" and "not a WAV" in problem["error"]
    assert problem["audio_url"] is None
    # Her supervisor hears her calls; the supervisor of another team does not even see Ali.
    boss = await world["api"].call("GET", path, await world["h"]("boss"))
    assert all(i.get("recordings") for i in boss["items"] if i["kind"] == "call")
    await world["api"].call("GET", path, await world["h"]("otherboss"), expect=404)


# -- audit --------------------------------------------------------------------------------


async def test_a_play_is_audited_once_however_often_the_player_seeks(world, db):
    rec = await world["record"]("c1", WAV.read_bytes())
    url = f"/api/v1/recordings/{rec.id}/audio"
    for rng in ("bytes=0-", "bytes=5000-", "bytes=100-200"):
        resp, _ = await _get(world, url, "sara", Range=rng)
        assert resp.status == 206
    await _get(world, url, "boss")

    plays = await _audits(db, "recording_play")
    assert len(plays) == 2  # one for Sara's play (three requests), one for her supervisor's
    assert plays[0].user_id == world["sara"].user.id and plays[1].user_id != plays[0].user_id
    assert {a.entity_type for a in plays} == {"recording"}
    assert {a.entity_id for a in plays} == {rec.id}
    assert all(a.detail["activity_id"] == rec.activity_id for a in plays)


async def test_every_download_is_audited_and_comes_as_an_attachment(world, db):
    rec = await world["record"]("c1", WAV.read_bytes())
    for _ in range(2):
        resp, data = await _get(world, f"/api/v1/recordings/{rec.id}/audio?download=1", "sara")
        assert resp.status == 200 and len(data) == rec.size
        assert resp.headers["Content-Disposition"] == (
            f'attachment; filename="recording-{rec.id}.opus"'
        )
    downloads = await _audits(db, "recording_download")
    assert len(downloads) == 2 and {a.user_id for a in downloads} == {world["sara"].user.id}


async def test_no_audit_entry_for_a_refused_play(world, db):
    rec = await world["record"]("c1", WAV.read_bytes())
    resp, _ = await _get(world, f"/api/v1/recordings/{rec.id}/audio", "reza")
    assert resp.status == 404
    assert await _audits(db, "recording_play") == []


# -- recordings without audio -------------------------------------------------------------


async def test_a_corrupt_recording_keeps_its_metadata_and_says_why_it_cannot_play(world):
    rec = await world["record"]("c1", b"JUNK" + WAV.read_bytes()[4:])
    meta = await world["api"].call("GET", f"/api/v1/recordings/{rec.id}", await world["h"]("sara"))
    assert meta["status"] == "corrupt" and "not a WAV" in meta["error"]
    assert meta["audio_url"] is None and meta["activity_id"] == rec.activity_id
    out = await world["api"].call(
        "GET", f"/api/v1/recordings/{rec.id}/audio", await world["h"]("sara"), expect=409
    )
    assert out["recording_status"] == "corrupt"


async def test_a_stored_file_lost_from_disk_is_a_clean_404(world):
    rec = await world["record"]("c1", WAV.read_bytes())
    world["service"].storage.path(rec.storage_key).unlink()
    out = await world["api"].call(
        "GET", f"/api/v1/recordings/{rec.id}/audio", await world["h"]("sara"), expect=404
    )
    assert "missing from storage" in out["error"]


async def test_a_supervisor_retries_a_recording_whose_file_came_late(world, db):
    rec = await world["record"]("late", None)
    assert rec.status == "pending"
    async with db.session() as s:  # the deadline passed (tests/test_recordings_ingest.py)
        (await s.get(Recording, rec.id)).status = "missing"
    api, h = world["api"], world["h"]
    await api.call("POST", f"/api/v1/recordings/{rec.id}/retry", await h("sara"), expect=403)
    path = Path(world["settings"].recordings.spool_dir) / "late.wav"
    path.write_bytes(WAV.read_bytes())
    os.utime(path, (time.time() - 60, time.time() - 60))
    out = await api.call("POST", f"/api/v1/recordings/{rec.id}/retry", await h("boss"), expect=202)
    assert out["status"] == "pending"
    async with asyncio.timeout(20):
        while out["status"] != "stored":
            await world["service"].run_due()
            out = await api.call("GET", f"/api/v1/recordings/{rec.id}", await h("boss"))
            await asyncio.sleep(0.05)


# -- holds, deletes, retention rules ------------------------------------------------------


async def test_a_supervisor_puts_a_recording_on_hold_and_an_admin_cannot_delete_it(world, db):
    rec = await world["record"]("c1", WAV.read_bytes())
    api, h = world["api"], world["h"]
    url = f"/api/v1/recordings/{rec.id}"
    await api.call("PATCH", url, await h("sara"), expect=403, json={"keep_forever": True})
    out = await api.call("PATCH", url, await h("boss"), json={"keep_forever": True})
    assert out["keep_forever"] and out["expires_at"] is None
    await api.call("DELETE", url, await h("admin"), expect=409)
    await api.call("PATCH", url, await h("boss"), json={"keep_forever": False})
    await api.call("DELETE", url, await h("boss"), expect=403)
    await api.call("DELETE", url + "?reason=customer%20request", await h("admin"), expect=204)

    assert not world["service"].storage.path(rec.storage_key).exists()
    meta = await api.call("GET", url, await h("admin"))
    assert meta["status"] == "deleted" and meta["audio_url"] is None
    (entry,) = await _audits(db, "recording_delete")
    assert entry.detail["reason"] == "customer request" and entry.entity_id == rec.id
    holds = [a for a in await _audits(db, "update") if a.entity_type == "recording"]
    assert [a.changes["keep_forever"] for a in holds] == [[False, True], [True, False]]


async def test_retention_rules_are_kept_by_admins_and_shape_each_expiry(world):
    rec = await world["record"]("c1", WAV.read_bytes())
    api, h = world["api"], world["h"]
    base = "/api/v1/recordings/retention-rules"
    await api.call(
        "POST", base, await h("boss"), expect=403, json={"queue": "sales", "keep_days": 30}
    )
    rule = await api.call(
        "POST", base, await h("admin"), expect=201, json={"queue": "sales", "keep_days": 30}
    )
    await api.call(
        "POST", base, await h("admin"), expect=409, json={"queue": "sales", "keep_days": 9}
    )
    await api.call(
        "POST", base, await h("admin"), expect=422, json={"campaign_id": 999, "keep_days": 9}
    )
    await api.call("POST", base, await h("admin"), expect=422, json={"queue": "x", "keep_days": 0})

    meta = await api.call("GET", f"/api/v1/recordings/{rec.id}", await h("sara"))
    assert meta["retention"] == f"rule {rule['id']} (queue sales)"
    expected = rec.started_at + dt.timedelta(days=30)
    assert dt.datetime.fromisoformat(meta["expires_at"]) == expected
    listed = await api.call("GET", base, await h("boss"))
    assert [r["keep_days"] for r in listed["items"]] == [30]

    await api.call("PATCH", f"{base}/{rule['id']}", await h("admin"), json={"keep_days": None})
    meta = await api.call("GET", f"/api/v1/recordings/{rec.id}", await h("sara"))
    assert meta["expires_at"] is None
    await api.call("DELETE", f"{base}/{rule['id']}", await h("admin"), expect=204)
    assert (await api.call("GET", base, await h("admin")))["items"] == []
