"""The campaigns page in a real browser (Debian's Chromium under Playwright): a manager
signs in, sees the campaigns' results, compares two side by side, counts a segment live
(and reads the errors of a bad filter), and previews a Persian template. Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.async_api import expect

from crm.db import Database
from crm.models import Campaign
from tests.campaign_kit import email_campaign, gateway_fixture, seed_audience  # noqa: F401
from tests.desktop_kit import chromium, new_page, screenshot

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


async def test_a_manager_compares_campaigns_counts_a_segment_and_previews_a_template(
    gateway, chromium_path
):
    gw = gateway
    aud = await seed_audience(gw.db)
    mail = await email_campaign(gw.db, aud, name="نوروز ۱۴۰۵", cost=100)
    await gw.mailer.launch(mail, None)
    await gw.mailer.wait(mail)
    async with gw.db.session() as s:
        s.add(Campaign(name="Winback calls", channel="call"))
    base = str(gw.client.make_url("/")).rstrip("/")

    async with chromium(chromium_path) as browser:
        page = await new_page(browser, base)
        await page.goto("/campaigns")
        await page.fill("#login-username", "boss")
        await page.fill("#login-password", "secret-boss")
        await page.press("#login-password", "Enter")

        table = page.locator("#campaign-table")
        await expect(table).to_be_visible()
        row = table.locator(f'tr[data-id="{mail}"]')
        await expect(row).to_contain_text("نوروز ۱۴۰۵")
        await expect(row.locator("td.n").nth(1)).to_have_text("۳")  # reached, Persian digits
        assert await page.evaluate("document.documentElement.dir") == "rtl"
        for box in await table.locator('input[type="checkbox"]').all():
            await box.check()
        await page.click("#compare")
        comparison = page.locator("#comparison")
        await expect(comparison).to_be_visible()
        await expect(comparison.locator("td.best").first).to_be_visible()
        await screenshot(page, "campaigns-compare-fa")

        await page.click("#tab-segments")
        await expect(page.locator("#segment-table")).to_contain_text("Nowruz list")
        await page.fill("#segment-filter", '{"tag": "nowruz"}')
        await page.click("#segment-count-btn")
        await expect(page.locator("#segment-count .count-badge")).to_have_text("۷ عضو")
        await page.fill("#segment-filter", '{"all": [{"field": "shoe_size", "value": 1}]}')
        await page.click("#segment-count-btn")
        await expect(page.locator("#segment-count .errors")).to_contain_text("filter.all[0].field")
        await screenshot(page, "campaigns-segment-errors-fa")

        await page.click("#tab-templates")
        await expect(page.locator("#template-editor")).to_be_visible()
        await page.fill("#preview-contact", str(aud.ids["ali"]))
        await page.click("#preview-btn")
        frame = page.frame_locator("#template-preview iframe")
        await expect(frame.locator("bdi").first).to_have_text("علی رضایی")
        await screenshot(page, "campaigns-template-preview-fa")
        assert page.js_errors == []
