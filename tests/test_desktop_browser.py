"""The agent desktop and the supervisor wallboard in a real browser (Debian's headless
Chromium under Playwright) against the whole gateway and the simulated PBX over AMI.

The scenario of the issue: an agent signs in, a call rings, the pop shows the right customer
before the answer, the agent answers (on the phone: the simulator picks up on command),
writes a note and a disposition, hangs up, and the call is on the customer's timeline; a
supervisor sees the queue change and pauses the agent; the Persian view is right to left.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
from sqlalchemy import select

from crm.db import Database
from crm.models import Activity, Lead, Recording, User
from crm.schemas import ActivityIn, ContactIn, PhoneIn, TeamIn
from crm.services import records
from crm.services.entities import SPECS
from crm.services.users import create_team
from cti.simulator import Agent, PbxConfig, QueueConfig, SimulatedPbx
from cti.simulator.engine import Request, SimCall
from tamas.app import create_app
from tamas.config import RecordingSettings, Settings
from tests.ami_trace import TRACES
from tests.crm_fixtures import Actor, make_actor
from tests.desktop_kit import chromium, new_page, screenshot
from tests.simulated import simulator_ami
from tests.waiting import eventually

pytestmark = pytest.mark.browser

WAV = TRACES / "recording-inbound-answered.wav"
RINGING_FOREVER = "100000"  # simulated seconds: the phone rings until the test answers


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path):
    """One backend is enough here: the browser tests are about the UI, not SQL."""
    path = tmp_path / "tamas.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        yield database
    finally:
        await database.dispose()


@dataclass
class World:
    """The running gateway, the simulated PBX and the people and customers in them."""

    pbx: SimulatedPbx
    db: Database
    app: Any
    base: str
    browser: Any
    admin: Actor
    sara: Actor
    reza: Actor
    boss: Actor
    ali_id: int
    spool: Path
    """Where the gateway finds the PBX's recordings (as if the PBX's monitor directory)."""

    def inbound(self, number: str, **kw) -> SimCall:
        kw.setdefault("talk", 3600)
        kw.setdefault("patience", 3600)
        return self.pbx.inbound_call(number, kw.pop("name", ""), queue="sales", **kw)

    async def answer(self, call: SimCall, extension: str = "1001") -> None:
        """The agent picks up their phone: the ringing simulated phone answers now."""
        self.pbx.state.db[f"lab/ring/{extension}"] = "0"
        self.pbx.engine.request(call, Request("answer", ""))  # wakes the ringing loop
        await call.wait_answered(10)
        self.pbx.state.db[f"lab/ring/{extension}"] = RINGING_FOREVER

    def hang_up(self, call: SimCall) -> None:
        """The caller hangs up."""
        self.pbx.engine.request(call, Request("hangup", call.legs[0].chan.name))

    def actions(self, name: str) -> list:
        return [m for m in self.pbx.actions if (m.get("Action") or "").lower() == name.lower()]


@pytest.fixture
async def world(db, tmp_path: Path, chromium_path: str):
    pbx = SimulatedPbx(
        config=PbxConfig(
            tech="PJSIP",
            agents=[
                Agent("1001", "Sara"),
                Agent("1002", "Reza"),
                Agent("1003", "Nima"),
                Agent("1009", "Boss"),
            ],
            queues=[QueueConfig("sales", ["1001", "1002"], timeout=3600)],
        ),
        time_scale=1.0,
    )
    await pbx.start()
    for ext in ("1001", "1002", "1003", "1009"):
        pbx.state.db[f"lab/ring/{ext}"] = RINGING_FOREVER
    async with db.session() as s:
        team = await create_team(s, None, TeamIn(name="Sales", queue="sales"))
        team_id = team.id
    admin = await make_actor(db, "admin", "admin")
    sara = await make_actor(
        db, "sara", team_ids=[team_id], devices=["PJSIP/1001"], extension="1001"
    )
    reza = await make_actor(
        db, "reza", team_ids=[team_id], devices=["PJSIP/1002"], extension="1002"
    )
    boss = await make_actor(
        db, "boss", "supervisor", team_ids=[team_id], devices=["PJSIP/1009"], extension="1009"
    )
    # Nima is in the team but not (yet) in its queue: he logs in from the desktop.
    await make_actor(db, "nima", team_ids=[team_id], devices=["PJSIP/1003"], extension="1003")
    async with db.session() as s:
        ali = await records.create(
            s,
            admin.principal,
            SPECS["contact"],
            ContactIn(
                first_name="علی",
                last_name="رضایی",
                email="ali@example.com",
                owner_id=sara.user.id,
                tags=["طلایی"],
                best_time_to_call="09:00-12:00",
                phones=[PhoneIn(number="09121234567")],
            ),
            "IR",
        )
        ali_id = ali.id
    spool = tmp_path / "spool"
    spool.mkdir()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        agi_port=0,
        ami=[simulator_ami(pbx, ping_interval=1, ping_timeout=1, action_timeout=3)],
        recordings=RecordingSettings(spool_dir=spool, stable_seconds=0.2),
    )
    app = create_app(settings, db)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    from cti.api import CONTROL

    control = app[CONTROL]

    async def link_up():
        pbx_entry = control.pbxs.get("lab")
        return pbx_entry is not None and getattr(pbx_entry.link, "state", None) == "up"

    try:
        await eventually(link_up, 10)
        async with chromium(chromium_path) as browser:
            yield World(
                pbx=pbx,
                db=db,
                app=app,
                base=str(server.make_url("/")).rstrip("/"),
                browser=browser,
                admin=admin,
                sara=sara,
                reza=reza,
                boss=boss,
                ali_id=ali_id,
                spool=spool,
            )
    finally:
        await server.close()
        await pbx.stop()


async def sign_in(world: World, username: str, path: str = "/app", **options):
    page = await new_page(world.browser, world.base, **options)
    await page.goto(path)
    await page.fill("#login-username", username)
    await page.fill("#login-password", f"secret-{username}")
    await page.press("#login-password", "Enter")
    await page.wait_for_selector("#conn[data-status=open]")
    return page


async def _calls(db) -> list[Activity]:
    async with db.session() as s:
        stmt = select(Activity).where(Activity.kind == "call").order_by(Activity.id)
        return list(await s.scalars(stmt))


async def test_agent_takes_a_call_from_pop_to_timeline(world):
    page = await sign_in(world, "sara")
    call = world.inbound("09121234567", name="Ali")

    # The pop shows the right customer while the phone is still ringing.
    card = page.locator(".call-card[data-phase=ringing]")
    await card.wait_for()
    summary = card.locator(".summary")
    assert await summary.get_attribute("data-type") == "contact"
    assert await summary.get_attribute("data-id") == str(world.ali_id)
    assert await card.locator(".open-record").inner_text() == "علی رضایی"
    assert "طلایی" in await card.inner_text()
    assert not call.answered.is_set()
    # ... and the customer's record opened by itself.
    await page.wait_for_selector(f"article.record[data-id='{world.ali_id}']")
    assert await page.inner_text("#record-title") == "علی رضایی"
    await screenshot(page, "agent-01-ringing-pop")

    await world.answer(call)
    await page.wait_for_selector(".call-card[data-phase=answered]")
    await page.fill(".call-card textarea[name=note]", "Asked about the March invoice")
    await page.select_option(".call-card select[name=disposition]", "resolved")
    await page.check(".call-card input[name=callback]")
    await page.fill(".call-card input[name=callback_at]", "2030-01-02T10:30")
    await screenshot(page, "agent-02-talking")

    await page.click(".call-card button.hangup")
    await page.wait_for_selector(".call-card[data-phase=ended]")
    await call.wait_finished(10)
    # What was typed during the call is still there for the wrap-up.
    assert (
        await page.input_value(".call-card textarea[name=note]") == "Asked about the March invoice"
    )
    await screenshot(page, "agent-03-wrap-up")
    await page.click(".call-card button.save-wrapup")
    await page.wait_for_selector(".call-card", state="detached")

    item = page.locator("#timeline li.activity[data-kind=call]").first
    await item.locator(".disposition[data-code=resolved]").wait_for()
    assert "Asked about the March invoice" in await item.inner_text()
    await screenshot(page, "agent-04-timeline")

    row = (await _calls(world.db))[-1]
    assert row.contact_id == world.ali_id and row.agent_id == world.sara.user.id
    assert (row.disposition, row.body) == ("resolved", "Asked about the March invoice")
    async with world.db.session() as s:
        task = await s.scalar(select(Activity).where(Activity.kind == "task"))
    assert task is not None and task.is_callback and task.contact_id == world.ali_id
    assert task.assignee_id == world.sara.user.id and task.status == "open"
    assert task.due_at is not None and task.due_at.year == 2030
    assert page.js_errors == []


async def test_the_recording_of_a_call_plays_on_the_customers_timeline(world):
    page = await sign_in(world, "sara")
    call = world.inbound("09121234567", name="Ali")
    await page.locator(".call-card[data-phase=ringing]").wait_for()
    await world.answer(call)
    world.hang_up(call)
    await call.wait_finished(10)

    async def recording() -> Recording | None:
        async with world.db.session() as s:
            return await s.scalar(select(Recording).where(Recording.call_uid == call.linkedid))

    rec = await eventually(recording)
    # Until the PBX's file is there, the timeline says so instead of offering a player.
    await page.goto(f"/app#/contact/{world.ali_id}")
    waiting = page.locator(f"#timeline .recording[data-id='{rec.id}']")
    await expect(waiting).to_have_attribute("data-status", re.compile("pending|ingesting"))
    # MixMonitor's file (the real one recorded from Asterisk 22) lands in the spool.
    (world.spool / Path(rec.source).name).write_bytes(WAV.read_bytes())

    async def stored() -> bool:
        found = await recording()
        return found is not None and found.status == "stored"

    await eventually(stored, 20)
    await page.reload()
    player = page.locator(f"#timeline .recording[data-id='{rec.id}'] audio")
    await player.wait_for()
    # The browser's own player fetches it (login cookie, Range) and knows its length.
    duration = await player.evaluate(
        """el => new Promise((ok, fail) => {
             el.addEventListener('loadedmetadata', () => ok(el.duration));
             el.addEventListener('error', () => fail(String(el.error && el.error.message)));
             el.preload = 'metadata'; el.load();
           })"""
    )
    assert duration == pytest.approx(5.5, abs=0.2)
    await screenshot(page, "agent-05-recording-on-timeline")
    assert page.js_errors == []


async def test_the_agent_state_selector_drives_the_pbx(world):
    page = await sign_in(world, "nima")
    badge = page.locator("#state-badge")
    await expect(badge).to_have_attribute("data-state", "logged_out")

    # Into the team's queue ...
    await page.select_option("#agent-state", "available")
    await expect(badge).to_have_attribute("data-state", "available")
    added = world.actions("QueueAdd")[-1]
    assert (added.get("Queue"), added.get("Interface")) == ("sales", "PJSIP/1003")

    # ... a break ...
    await page.select_option("#agent-state", "paused:break")
    await expect(badge).to_have_attribute("data-state", "paused")
    assert "استراحت" in await badge.inner_text()
    pause = world.actions("QueuePause")[-1]
    assert (pause.get("Interface"), pause.get("Paused"), pause.get("Reason")) == (
        "PJSIP/1003",
        "true",
        "break",
    )
    await screenshot(page, "agent-06-paused")

    # ... and out of the queue again.
    await page.select_option("#agent-state", "logged_out")
    await expect(badge).to_have_attribute("data-state", "logged_out")
    removed = world.actions("QueueRemove")[-1]
    assert (removed.get("Queue"), removed.get("Interface")) == ("sales", "PJSIP/1003")
    assert page.js_errors == []


async def test_a_call_ringing_in_a_hidden_tab_notifies_and_survives_a_reload(world):
    page = await new_page(world.browser, world.base)
    # The tab is in the background; record the notifications the page shows.
    await page.add_init_script(
        """
        window.__hidden = true;
        Object.defineProperty(Document.prototype, 'hidden', { get: () => window.__hidden });
        Object.defineProperty(Document.prototype, 'visibilityState',
            { get: () => (window.__hidden ? 'hidden' : 'visible') });
        window.__notes = [];
        const Real = window.Notification;
        window.Notification = class extends Real {
            constructor(title, options) {
                super(title, options);
                window.__notes.push({ title, body: options.body, tag: options.tag });
            }
        };
        window.Notification.requestPermission = Real.requestPermission.bind(Real);
        """
    )
    await page.goto("/app")
    await page.fill("#login-username", "sara")
    await page.fill("#login-password", "secret-sara")
    await page.press("#login-password", "Enter")
    await page.wait_for_selector("#conn[data-status=open]")
    assert await page.evaluate("Notification.permission") == "granted"

    call = world.inbound("09121234567")
    await page.wait_for_selector(".call-card[data-phase=ringing]")
    notes = await eventually(lambda: page.evaluate("window.__notes.length && window.__notes"))
    assert notes[0]["body"].startswith("علی رضایی")
    assert (await page.title()).startswith("☎ علی رضایی")

    # A reload never hides a ringing call: the snapshot brings the pop back.
    await page.reload()
    await page.wait_for_selector(".call-card[data-phase=ringing] .summary[data-type=contact]")
    await world.answer(call)
    await page.wait_for_selector(".call-card[data-phase=answered]")
    assert not (await page.title()).startswith("☎")
    assert page.js_errors == []


async def test_the_desktop_resumes_where_it_left_off_when_the_hub_drops_it(world):
    import json

    from screenpop.hub import CLOSE_BEHIND, HUB

    page = await new_page(world.browser, world.base)
    hellos: list[dict] = []
    welcomes: list[dict] = []

    def watch(ws):
        def sent(payload):
            frame = json.loads(payload)
            if frame.get("type") == "hello":
                hellos.append(frame)

        def received(payload):
            frame = json.loads(payload)
            if frame.get("type") == "welcome":
                welcomes.append(frame)

        ws.on("framesent", sent)
        ws.on("framereceived", received)

    page.on("websocket", watch)
    await page.goto("/app")
    await page.fill("#login-username", "sara")
    await page.fill("#login-password", "secret-sara")
    await page.press("#login-password", "Enter")
    await page.wait_for_selector("#conn[data-status=open]")
    call = world.inbound("09121234567")
    await page.wait_for_selector(".call-card[data-phase=ringing]")

    # The hub drops the socket (as it does for a client that fell behind) and the call is
    # answered before the page is back: the answer must still reach it.
    session = world.app[HUB].sessions[world.sara.user.id]
    for client in list(session.clients):
        client.close(CLOSE_BEHIND, "client fell behind; reconnect with last_seq")
    await world.answer(call)
    await page.wait_for_selector(".call-card[data-phase=answered]")
    assert len(hellos) == 2
    assert hellos[0]["last_seq"] is None and isinstance(hellos[1]["last_seq"], int)
    assert hellos[1]["epoch"] == welcomes[0]["epoch"]
    assert welcomes[1]["resumed"] is True  # replayed from the buffer, no snapshot needed
    assert page.js_errors == []


async def test_an_unknown_caller_becomes_a_lead_from_the_pop(world):
    page = await sign_in(world, "sara", locale="en-US")
    await page.click("#lang-toggle")  # to English
    await page.wait_for_selector("html[lang=en][dir=ltr]")
    world.inbound("09350001122")
    card = page.locator(".call-card[data-phase=ringing]")
    await card.locator(".unknown").wait_for()
    await screenshot(page, "agent-05-unknown-caller")
    await card.locator("button.create-lead").click()
    await page.fill("#lead-first", "Parisa")
    await page.fill("#lead-last", "Ahmadi")
    await page.press("#lead-last", "Enter")
    await page.wait_for_selector("article.record[data-type=lead]")
    assert await page.inner_text("#record-title") == "Parisa Ahmadi"
    async with world.db.session() as s:
        lead = await s.scalar(select(Lead).where(Lead.first_name == "Parisa"))
    assert lead is not None
    # The number came from the call log: the agent only ever saw it masked.
    from crm.services.phones import phones_of

    async with world.db.session() as s:
        numbers = (await phones_of(s, "lead", [lead.id]))[lead.id]
    assert [p.e164 for p in numbers] == ["+989350001122"]

    async def linked():
        rows = await _calls(world.db)
        return rows and rows[-1].lead_id == lead.id

    await eventually(linked)
    assert page.js_errors == []


async def test_supervisor_sees_the_queue_change_and_pauses_an_agent(world):
    board = await sign_in(world, "boss", "/wallboard")
    sara_row = board.locator(f"tr[data-agent-id='{world.sara.user.id}']")
    await sara_row.wait_for()
    tile = board.locator(".tile[data-queue=sales]")
    await tile.wait_for()
    assert await tile.locator(".waiting dd").inner_text() == "۰"

    call = world.inbound("09121234567")
    await expect(tile.locator(".waiting dd")).to_have_text("۱")
    live = board.locator("#live-calls tr[data-call-id]")
    await live.wait_for()
    await screenshot(board, "wallboard-01-caller-waiting")
    await world.answer(call)
    await expect(tile.locator(".answered dd")).to_have_text("۱")
    assert await tile.locator(".waiting dd").inner_text() == "۰"
    await board.wait_for_selector(f"tr[data-agent-id='{world.sara.user.id}'][data-state=on_call]")

    # Listen in: the supervisor's own phone is called and spies on Sara's channel.
    await live.locator("button.spy-listen").click()
    spies = await eventually(lambda: world.actions("Originate"))
    assert spies[-1].get("Channel") == "PJSIP/1009"
    assert (spies[-1].get("Data") or "").startswith("PJSIP/1001-")
    await screenshot(board, "wallboard-02-listening")

    # A paused agent still on a call is shown on the call: let the caller hang up first.
    world.hang_up(call)
    await call.wait_finished(10)
    await board.wait_for_selector(f"tr[data-agent-id='{world.sara.user.id}'][data-state=available]")

    await sara_row.locator("button.pause").click()
    await board.select_option("#pause-reason", "lunch")
    await board.click("#pause-dialog button[type=submit]")
    await board.wait_for_selector(f"tr[data-agent-id='{world.sara.user.id}'][data-state=paused]")
    assert "ناهار" in await sara_row.inner_text()
    pauses = world.actions("QueuePause")
    assert pauses[-1].get("Interface") == "PJSIP/1001" and pauses[-1].get("Paused") == "true"
    assert pauses[-1].get("Reason") == "lunch"
    await screenshot(board, "wallboard-03-agent-paused")

    await sara_row.locator("button.unpause").click()
    await board.wait_for_selector(
        f"tr[data-agent-id='{world.sara.user.id}']:not([data-state=paused])"
    )
    assert board.js_errors == []


async def test_supervisor_reassigns_a_callback_left_by_an_abandoned_call(world):
    board = await sign_in(world, "boss", "/wallboard", locale="en-US")
    await board.click("#lang-toggle")
    await board.wait_for_selector("html[lang=en]")
    call = world.inbound("09121234567", patience=1)  # hangs up before anyone answers
    await call.wait_finished(10)
    # The abandoned call left a callback task for Sara (the contact's owner); it is shown
    # because the queue's abandoned count went up (pushed, not polled).
    row = board.locator("#callbacks tr[data-task-id]")
    await row.wait_for()
    assert await row.locator(".assignee").inner_text() == "Sara"
    await row.locator("select.reassign-to").select_option(str(world.reza.user.id))
    await row.locator("button.reassign").click()
    await expect(board.locator("#callbacks .assignee").first).to_have_text("Reza")
    async with world.db.session() as s:
        task = await s.scalar(select(Activity).where(Activity.is_callback.is_(True)))
    assert task.assignee_id == world.reza.user.id and task.owner_id == world.reza.user.id
    await screenshot(board, "wallboard-04-callback-reassigned")
    assert board.js_errors == []


async def test_persian_view_is_right_to_left_with_jalali_dates_and_works_by_keyboard(world):
    async with world.db.session() as s:
        await records.create(
            s,
            world.admin.principal,
            SPECS["activity"],
            ActivityIn(
                kind="note",
                subject="پیگیری قرارداد",
                contact_id=world.ali_id,
                owner_id=world.sara.user.id,
                occurred_at="2025-03-21T08:00:00Z",
            ),
            "IR",
        )
    page = await sign_in(world, "sara")
    assert await page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == [
        "fa",
        "rtl",
    ]
    assert await page.inner_text("#calls h2") == "تماس‌ها"

    # Keyboard only: "/" to search, a number typed in Persian digits, Enter, Enter.
    await page.keyboard.press("/")
    assert await page.evaluate("document.activeElement.id") == "search"
    await page.keyboard.type("۰۹۱۲ ۱۲۳ ۴۵۶۷")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#search-results .result-link")
    assert await page.evaluate("document.activeElement.className") == "result-link"
    await page.keyboard.press("Enter")
    await page.wait_for_selector(f"article.record[data-id='{world.ali_id}']")

    # Right to left: the calls column is on the right of the record.
    calls_box = await page.locator("#calls").bounding_box()
    main_box = await page.locator("#main").bounding_box()
    assert calls_box["x"] > main_box["x"]
    # Jalali date (1 Farvardin 1404), Persian digits, phone numbers kept left to right.
    note = page.locator("#timeline li.activity[data-kind=note]")
    assert "۱ فروردین ۱۴۰۴" in await note.inner_text()
    phone = page.locator(".phones bdi").first
    assert await phone.get_attribute("dir") == "ltr"
    assert await phone.inner_text() == "۰۹۱۲****۵۶۷"  # agents see phones masked
    await screenshot(page, "desktop-rtl-fa")

    # Help overlay with "?", closed with Escape.
    await page.keyboard.press("?")
    await page.wait_for_selector("#help-dialog[open]")
    await screenshot(page, "desktop-help-fa")
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#help-dialog", state="detached")

    # Click-to-call: the agent's phone is dialled with the stored number, not the shown one.
    await page.locator(".phones .call-btn").first.click()
    originate = await eventually(lambda: world.actions("Originate"))
    assert originate[-1].get("Channel") == "PJSIP/1001"
    assert "9121234567" in str(originate[-1])

    # English: left to right, Gregorian, Latin digits; remembered as the user's language.
    await page.keyboard.press("l")
    await page.wait_for_selector("html[lang=en][dir=ltr]")
    await page.wait_for_selector("#timeline li.activity[data-kind=note]")
    assert "21 Mar 2025" in await page.locator("#timeline li.activity[data-kind=note]").inner_text()
    await screenshot(page, "desktop-ltr-en")

    async def saved_language():
        async with world.db.session() as s:
            return (await s.get(User, world.sara.user.id)).language == "en"

    await eventually(saved_language)
    assert page.js_errors == []
