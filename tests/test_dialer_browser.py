"""The campaign card and reminders on the agent desktop, in a real browser (Debian's
headless Chromium under Playwright) against the gateway and the simulated PBX over AMI:
a preview card the agent dials from, the campaign's disposition form after the call, and a
task reminder pushed by the automation rules. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from crm.automation import AUTOMATION
from crm.db import Database
from crm.models import Activity, DialerEntry, Segment, SegmentMember
from crm.schemas import ActivityIn, ContactIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from cti.api import CONTROL
from cti.simulator import PbxConfig, SimulatedPbx
from tamas.app import create_app
from tamas.config import Settings
from tests.crm_fixtures import make_actor
from tests.desktop_kit import chromium, new_page, screenshot
from tests.simulated import simulator_ami
from tests.waiting import eventually

pytestmark = pytest.mark.browser


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path):
    """One backend is enough here: the browser test is about the UI, not SQL."""
    path = tmp_path / "tamas.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        yield database
    finally:
        await database.dispose()


async def test_agent_dials_a_preview_card_records_the_outcome_and_sees_a_reminder(
    db, tmp_path, chromium_path
):
    pbx = SimulatedPbx(config=PbxConfig(tech="PJSIP"), time_scale=0.05)
    await pbx.start()
    admin = await make_actor(db, "admin", "admin")
    sara = await make_actor(db, "sara", devices=["PJSIP/1001"], extension="1001")
    async with db.session() as s:
        ali = await records.create(
            s,
            admin.principal,
            SPECS["contact"],
            ContactIn(first_name="علی", last_name="رضایی", phones=[PhoneIn(number="09121234567")]),
            "IR",
        )
        segment = Segment(name="Preview", entity_type="contact", kind="static", filter={})
        s.add(segment)
        await s.flush()
        s.add(SegmentMember(segment_id=segment.id, entity_id=ali.id))
        ali_id, segment_id = ali.id, segment.id
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        agi_port=0,
        dialer={"tick_seconds": 0.2},
        ami=[simulator_ami(pbx, ping_interval=1, ping_timeout=1, action_timeout=3)],
    )
    app = create_app(settings, db)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("/")).rstrip("/")
    control = app[CONTROL]
    try:
        await eventually(lambda: getattr(control.pbxs["lab"].link, "state", None) == "up", 10)
        async with chromium(chromium_path) as browser:
            page = await new_page(browser, base)
            await page.goto("/app")
            await page.fill("#login-username", "sara")
            await page.fill("#login-password", sara.password)
            await page.press("#login-password", "Enter")
            await page.wait_for_selector("#conn[data-status=open]")

            # The admin starts a preview campaign for Sara.
            async with aiohttp.ClientSession(base) as http:
                login = await http.post(
                    "/api/v1/auth/login", json={"username": "admin", "password": admin.password}
                )
                token = (await login.json())["token"]
                auth = {"Authorization": f"Bearer {token}"}
                made = await http.post(
                    "/api/v1/dialer/campaigns",
                    headers=auth,
                    json={
                        "name": "بهار",
                        "segment_id": segment_id,
                        "mode": "preview",
                        "agent_ids": [sara.user.id],
                        "calling_hours": "00:00-24:00",
                    },
                )
                assert made.status == 201, await made.text()
                cid = (await made.json())["id"]
                started = await http.post(f"/api/v1/dialer/campaigns/{cid}/start", headers=auth)
                assert started.status == 200

            card = page.locator(".dialer-card.dialer-preview")
            await card.wait_for()
            assert "علی رضایی" in await card.inner_text()
            assert "بهار" in await card.inner_text()
            await screenshot(page, "dialer-01-preview-card")
            await card.locator("button.dialer-dial").click()

            form = page.locator(".dialer-card.dialer-wrapup form.dialer-wrapup")
            await form.wait_for(timeout=20_000)
            await form.locator("select.dialer-code").select_option("sale")
            await form.locator("textarea").fill("خرید بسته سالانه")
            await screenshot(page, "dialer-02-disposition")
            await form.locator("button.dialer-save").click()
            await page.locator(".dialer-card").wait_for(state="detached")

            async def done():
                async with db.session() as s:
                    entry = await s.scalar(
                        select(DialerEntry).where(DialerEntry.campaign_id == cid)
                    )
                    return entry if entry.state == "done" else None

            entry: Any = await eventually(done)
            assert entry.disposition == "sale" and entry.entity_id == ali_id
            async with db.session() as s:
                call = await s.scalar(select(Activity).where(Activity.kind == "call"))
            assert call.disposition == "sale" and "خرید بسته سالانه" in call.body

            # A task due soon: the reminder shows on the desktop.
            async with db.session() as s:
                await records.create(
                    s,
                    admin.principal,
                    SPECS["activity"],
                    ActivityIn(
                        kind="task",
                        subject="پیگیری قرارداد",
                        assignee_id=sara.user.id,
                        contact_id=ali_id,
                        due_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
                    ),
                    "IR",
                )
            async with aiohttp.ClientSession(base) as http:
                login = await http.post(
                    "/api/v1/auth/login", json={"username": "admin", "password": admin.password}
                )
                auth = {"Authorization": f"Bearer {(await login.json())['token']}"}
                made = await http.post(
                    "/api/v1/automation/rules",
                    headers=auth,
                    json={"name": "Reminders", "kind": "reminders", "config": {}},
                )
                assert made.status == 201
            await app[AUTOMATION].tick()
            reminder = page.locator(".reminders li.reminder")
            await reminder.wait_for()
            assert "پیگیری قرارداد" in await reminder.inner_text()
            await screenshot(page, "dialer-03-reminder")
            await reminder.locator("button.reminder-dismiss").click()
            await reminder.wait_for(state="detached")
            assert not page.js_errors, page.js_errors
    finally:
        await server.close()
        await pbx.stop()
