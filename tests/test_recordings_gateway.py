"""On-demand recording over REST, end to end: the gateway sends the real AMI actions to the
simulated PBX over a socket, the PBX's events come back, and the recording lands on the
call with who started it and the pauses (card numbers) in it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from crm.models import Activity, AuditEntry, Recording
from cti.ami_link import AmiLink
from cti.api import CONTROL
from cti.simulator import PbxConfig, SimulatedPbx
from recordings.api import RECORDINGS
from tamas.app import create_app
from tamas.config import RecordingSettings, Settings
from tests.ami_trace import TRACES
from tests.crm_fixtures import Api, make_actor
from tests.simulated import simulator_ami

WAV = TRACES / "recording-inbound-answered.wav"
TIME_SCALE = 0.02
pytestmark = pytest.mark.skipif(not WAV.exists(), reason="asterisk traces not available")


@pytest.fixture
async def gateway(db, tmp_path: Path):
    # The dialplan does not record: agents start recordings themselves.
    pbx = SimulatedPbx(config=PbxConfig(tech="PJSIP", record=False), time_scale=TIME_SCALE)
    await pbx.start()
    spool = tmp_path / "spool"
    spool.mkdir()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        recordings=RecordingSettings(spool_dir=spool, stable_seconds=0.2),
        ami=[simulator_ami(pbx, ping_interval=0.2, ping_timeout=0.5, action_timeout=2)],
    )
    sara = await make_actor(db, "sara", devices=["PJSIP/1001"], extension="1001")
    reza = await make_actor(db, "reza", devices=["PJSIP/1002"], extension="1002")
    app = create_app(settings, db)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    control = app[CONTROL]
    link = control.pbxs["lab"].link
    assert isinstance(link, AmiLink)
    await link.wait_up(5)
    try:
        yield {
            "pbx": pbx,
            "api": Api(client, db),
            "control": control,
            "service": app[RECORDINGS],
            "spool": spool,
            "actors": {"sara": sara, "reza": reza},
        }
    finally:
        await client.close()
        await pbx.stop()


async def _wait_for(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while True:
            result = await predicate()
            if result:
                return result
            await asyncio.sleep(0.05)


async def _recording(db) -> Recording | None:
    async with db.session() as s:
        return await s.scalar(select(Recording))


async def test_an_agent_records_pauses_for_a_card_number_and_stops(gateway, db):
    api, pbx = gateway["api"], gateway["pbx"]
    call = pbx.inbound_call("09121234567", "علی رضایی", queue="sales", talk=600)
    await call.wait_answered()
    machine = gateway["control"].pbxs["lab"].machine

    async def live_call():
        return next((c for c in machine.calls.values() if c.agents_talked), None)

    live = await _wait_for(live_call)
    agent_id = int(live.agents_talked[0].split(":")[1])
    me = next(n for n, a in gateway["actors"].items() if a.user.id == agent_id)
    other = "reza" if me == "sara" else "sara"
    mine = await api.login(me, gateway["actors"][me].password)
    theirs = await api.login(other, gateway["actors"][other].password)
    base = f"/api/v1/calls/lab/{live.call_id}/recording"

    # Nothing is recording yet: nothing to pause.
    await api.call("POST", f"{base}/pause", mine, expect=409)
    await api.call("POST", f"{base}/start", theirs, expect=403)
    started = await api.call("POST", f"{base}/start", mine, expect=202)
    assert started["file"].startswith("/var/spool/asterisk/monitor/tamas-")
    rec = await _wait_for(lambda: _recording(db))
    assert rec.source == started["file"] and rec.started_by == "agent"
    assert rec.started_by_id == agent_id and rec.channel == started["channels"][0]

    async def recording_active():
        return live.recording_active

    await _wait_for(recording_active)
    await api.call("POST", f"{base}/start", mine, expect=409)  # already recording

    # The card number: the MixMonitor is muted on the PBX, not just flagged here.
    await api.call("POST", f"{base}/pause", theirs, expect=403)
    paused = await api.call("POST", f"{base}/pause", mine, expect=202)
    monitored = [c for c in pbx.state.channels.values() if c.mixmonitor]
    assert monitored
    assert paused["channels"] == [c.name for c in monitored]
    await asyncio.sleep(0.2)
    await api.call("POST", f"{base}/resume", mine, expect=202)

    async def closed_pause():
        r = await _recording(db)
        return r if r is not None and r.pauses and r.pauses[-1][1] else None

    rec = await _wait_for(closed_pause)
    assert len(rec.pauses) == 1

    await api.call("POST", f"{base}/stop", mine, expect=202)
    rec = await _wait_for(lambda: _stopped(db))
    await api.call("POST", f"{base}/pause", mine, expect=409)  # stopped: nothing to mute

    # MixMonitor wrote the file (here: the recorded one) where the PBX said.
    path = gateway["spool"] / Path(started["file"]).name
    path.write_bytes(WAV.read_bytes())
    os.utime(path, (time.time() - 60, time.time() - 60))
    await api.call("POST", f"/api/v1/calls/lab/{live.call_id}/hangup", mine, expect=202)
    await call.wait_finished()

    async def stored():
        await gateway["service"].run_due()
        r = await _recording(db)
        return r if r is not None and r.status == "stored" else None

    rec = await _wait_for(stored, timeout=20)
    async with db.session() as s:
        activity = await s.get(Activity, rec.activity_id)
        actions = [
            a.action
            for a in await s.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.like("recording_%"))
                .order_by(AuditEntry.id)
            )
        ]
    assert activity.call_uid == live.call_id and activity.agent_id == agent_id
    assert rec.duration_s == pytest.approx(5.5)
    assert actions == ["recording_start", "recording_pause", "recording_resume", "recording_stop"]
    resp = await api.client.get(f"/api/v1/recordings/{rec.id}/audio", headers=mine)
    assert resp.status == 200 and len(await resp.read()) == rec.size


async def _stopped(db) -> Recording | None:
    rec = await _recording(db)
    return rec if rec is not None and rec.stopped_at is not None else None


async def test_recording_actions_on_a_call_that_is_not_there_are_404(gateway):
    api = gateway["api"]
    mine = await api.login("sara", gateway["actors"]["sara"].password)
    await api.call("POST", "/api/v1/calls/lab/12345.6/recording/start", mine, expect=404)
    await api.call("POST", "/api/v1/calls/lab/12345.6/recording/rewind", mine, expect=404)
