"""The reports page (/reports) in a real browser (Debian's headless Chromium under
Playwright): charts drawn as inline SVG from the report API's figures, right to left in
Persian with Jalali dates and Persian digits, left to right in English, and the CSV
download. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
from sqlalchemy import select

from crm.db import Database
from crm.models import Activity, Deal, Stage
from tamas.app import create_app
from tamas.config import Settings
from tests.crm_fixtures import make_actor, make_pipeline
from tests.desktop_kit import chromium, new_page, screenshot

pytestmark = pytest.mark.browser

TEHRAN = ZoneInfo("Asia/Tehran")
PERSIAN = str.maketrans("۰۱۲۳۴۵۶۷۸۹٫٬", "0123456789.,")


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path):
    path = tmp_path / "tamas.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def site(db, tmp_path: Path, chromium_path: str):
    admin = await make_actor(db, "admin", "admin")
    sara = await make_actor(db, "sara")
    reza = await make_actor(db, "reza")
    pipe = await make_pipeline(db)
    # Three days of queue calls: 1, 2 and 3 Farvardin 1403 (20-22 March 2024, Tehran).
    calls = []
    async with db.session() as s:
        for day, (answered, abandoned, missed) in enumerate([(5, 2, 1), (3, 0, 2), (7, 1, 0)]):
            base = dt.datetime(2024, 3, 20 + day, 10, tzinfo=TEHRAN).astimezone(dt.UTC)
            outcomes = ["answered"] * answered + ["abandoned"] * abandoned + ["missed"] * missed
            for n, outcome in enumerate(outcomes):
                at = base + dt.timedelta(minutes=7 * n)
                ok = outcome == "answered"
                agent = (sara if n % 2 else reza).user.id
                s.add(
                    Activity(
                        kind="call",
                        pbx="p",
                        call_uid=f"{day}-{n}",
                        occurred_at=at,
                        started_at=at,
                        answered_at=at + dt.timedelta(seconds=10 + n) if ok else None,
                        ended_at=at + dt.timedelta(seconds=200),
                        wait_s=10 + n,
                        talk_s=180 if ok else None,
                        queue="sales",
                        agent_id=agent if ok else None,
                        direction="inbound",
                        disposition="sale" if ok and n % 3 == 0 else outcome,
                        details={},
                    )
                )
                calls.append((day, outcome))
        stages = list(await s.scalars(select(Stage).where(Stage.pipeline_id == pipe)))
        for n, st in enumerate(stages[:2]):
            for k in range(n + 2):
                s.add(
                    Deal(
                        title=f"D{n}{k}",
                        pipeline_id=pipe,
                        stage_id=st.id,
                        amount=Decimal((k + 1) * 10_000_000),
                        owner_id=sara.user.id,
                    )
                )
    settings = Settings(
        data_dir=tmp_path / "data", database_url=db.url, simulate_pbx=False, agi_port=0
    )
    app = create_app(settings, db)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with chromium(chromium_path) as browser:
            yield {
                "base": str(server.make_url("/")).rstrip("/"),
                "browser": browser,
                "calls": calls,
                "admin": admin,
            }
    finally:
        await server.close()


async def _sign_in(site, username: str, **options):
    page = await new_page(site["browser"], site["base"], **options)
    await page.goto("/reports")
    await page.fill("#login-username", username)
    await page.fill("#login-password", f"secret-{username}")
    await page.press("#login-password", "Enter")
    await page.wait_for_selector("#report-filters")
    return page


async def _bars(page, chart: str) -> list[dict]:
    return await page.eval_on_selector_all(
        f"#{chart} rect.bar",
        """els => els.map(e => ({
            category: e.dataset.category, series: e.dataset.series,
            value: Number(e.dataset.value), x: Number(e.getAttribute('x')),
            height: Number(e.getAttribute('height'))}))""",
    )


async def test_reports_page_draws_the_queue_chart_right_to_left_and_in_english(site):
    page = await _sign_in(site, "admin")
    # The default report: agents over the last seven days (nothing yet), in Persian.
    await page.wait_for_selector("#no-rows")
    assert await page.get_attribute("html", "dir") == "rtl"
    await page.goto("/reports#/agent?from=1403-01-01&to=1403-01-03")
    await page.wait_for_selector("#chart-agent-calls rect.bar")
    await page.wait_for_selector("#chart-agent-times rect.bar")

    await page.goto("/reports#/queue?from=1403-01-01&to=1403-01-03&interval=day")
    await page.wait_for_selector("#chart-queue rect.bar")
    bars = await _bars(page, "chart-queue")
    days = ["1403/01/01", "1403/01/02", "1403/01/03"]
    series = {"پاسخ‌داده": "answered", "رهاشده": "abandoned", "بی‌پاسخ": "missed"}
    assert len(bars) == len(days) * len(series)
    for b in bars:
        day = days.index(b["category"])
        expected = sum(1 for d, o in site["calls"] if d == day and o == series[b["series"]])
        assert b["value"] == expected, b
        assert (b["height"] > 0) == (expected > 0)
    # Right to left: the first day is drawn on the right.
    first = min(b["x"] for b in bars if b["category"] == days[0])
    last = max(b["x"] for b in bars if b["category"] == days[-1])
    assert first > last
    assert await page.get_attribute("#chart-queue", "data-rtl") == "1"
    dots = await page.eval_on_selector_all("#chart-queue circle.dot", "els => els.length")
    assert dots == 3  # the service level line has a point per day
    # The table's total, in Persian digits, is every call of the three days.
    total = await page.inner_text("#report-table tfoot td[data-key=offered]")
    assert int(total.translate(PERSIAN)) == len(site["calls"])
    assert "۱۴۰۳/۰۱/۰۱ — ۱۴۰۳/۰۱/۰۳" in await page.inner_text("#report-title")
    await screenshot(page, "reports-01-queue-fa")

    async with page.expect_download() as info:
        await page.click("#download-csv")
    download = await info.value
    path = await download.path()
    raw = await asyncio.to_thread(Path(path).read_bytes)
    assert raw.startswith(b"\xef\xbb\xbf") and "صف".encode() in raw

    await page.click("#lang-toggle")
    await expect(page.locator("html")).to_have_attribute("dir", "ltr")
    await page.wait_for_selector("#chart-queue[data-rtl='0'] rect.bar")
    bars = await _bars(page, "chart-queue")
    en_days = ["2024-03-20", "2024-03-21", "2024-03-22"]
    assert sorted({b["category"] for b in bars}) == en_days
    first = max(b["x"] for b in bars if b["category"] == en_days[0])
    last = min(b["x"] for b in bars if b["category"] == en_days[-1])
    assert first < last  # left to right in English
    assert "Offered" in await page.inner_text("#report-table thead")
    await screenshot(page, "reports-02-queue-en")

    await page.click(".report-tabs a[data-kind=pipeline]")
    await page.wait_for_selector("#pipeline-summary")
    bars = await _bars(page, "chart-pipeline")
    open_value = {b["category"]: b["value"] for b in bars if b["series"] == "Open value"}
    assert open_value == {"Qualify": 30_000_000, "Proposal": 60_000_000, "Won": 0, "Lost": 0}
    await screenshot(page, "reports-03-pipeline-en")
    assert page.js_errors == []


async def test_an_agent_sees_only_their_own_row(site):
    page = await _sign_in(site, "sara", locale="en-US")
    await page.wait_for_selector("#report-title")
    await page.fill("#f-from", "2024-03-20")
    await page.fill("#f-to", "2024-03-22")
    await page.click("#show-report")
    # Gregorian days typed in, shown back as Jalali (her language is Persian).
    await expect(page.locator("#report-title")).to_contain_text("۱۴۰۳/۰۱/۰۱ — ۱۴۰۳/۰۱/۰۳")
    await expect(page.locator("#report-table tbody tr")).to_have_count(1)
    assert "Sara" in await page.inner_text("#report-table tbody")
    # No team or agent beyond herself to choose from.
    options = await page.eval_on_selector_all("#f-agent_id option", "els => els.length")
    assert options == 2  # "all" and herself
    assert page.js_errors == []
