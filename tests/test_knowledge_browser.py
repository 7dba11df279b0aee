"""The agent desktop during a real (simulated PBX) call: the caller's record opens with the
campaign's and the lead list's call scripts filled in with the customer's fields, and the
agent searches the knowledge base and reads an article while still on the call. Debian's
headless Chromium under Playwright; screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from crm.knowledge import articles as kb
from crm.schemas import CampaignIn, LeadIn, LeadListIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS

# The gateway, the simulated PBX and Chromium of the desktop's browser tests.
from tests.test_desktop_browser import db, sign_in, world  # noqa: F401

pytestmark = pytest.mark.browser


async def _content(world):  # noqa: F811 - the fixture imported above
    admin = world.admin.principal
    async with world.db.session() as s:
        lead_list = await records.create(
            s,
            admin,
            SPECS["lead_list"],
            LeadListIn(name="نمایشگاه", call_script="{{first_name}} را در نمایشگاه دیدیم."),
            "IR",
        )
        campaign = await records.create(
            s,
            admin,
            SPECS["campaign"],
            CampaignIn(
                name="نوروز",
                offer="۲۰٪ تخفیف",
                call_script=(
                    "{{#fa}}سلام {{first_name}} {{last_name}} از {{company}}، "
                    "{{agent.full_name}} هستم. پیشنهاد ما: {{campaign.offer}}. "
                    "بودجه: {{custom.budget}}{{/fa}}{{#en}}Hello {{first_name}}{{/en}}"
                ),
            ),
            "IR",
        )
        lead = await records.create(
            s,
            admin,
            SPECS["lead"],
            LeadIn(
                first_name="مریم",
                last_name="کریمی",
                company="پارس",
                owner_id=world.sara.user.id,
                lead_list_id=lead_list.id,
                campaign_id=campaign.id,
                phones=[PhoneIn(number="09350001122")],
            ),
            "IR",
        )
        cat = await kb.create_category(
            s, admin, kb.CategoryIn(name_fa="بازگشت کالا", name_en="Returns")
        )
        art, v1 = await kb.create_article(
            s,
            admin,
            kb.ArticleIn(
                title="شرایط بازگشت کالا",
                body="تا هفت روز پس از خرید، کالا با فاکتور پس گرفته می‌شود.\nهزینه ارسال با ما.",
                category_id=cat.id,
            ),
        )
        await kb.approve(s, admin, v1.id, None)
        await kb.create_article(
            s, admin, kb.ArticleIn(title="بازگشت وجه (پیش‌نویس)", body="هنوز تأیید نشده")
        )
        return lead.id, art.id


async def test_scripts_and_knowledge_base_during_a_call(world):  # noqa: F811
    lead_id, article_id = await _content(world)
    page = await sign_in(world, "sara")
    call = world.inbound("09350001122", name="Maryam")
    await page.wait_for_selector(f"article.record[data-type=lead][data-id='{lead_id}']")

    campaign = page.locator(".card.script[data-source=campaign] .script-text")
    await expect(campaign).to_contain_text("سلام مریم کریمی از پارس، Sara هستم.")
    await expect(campaign).to_contain_text("پیشنهاد ما: ۲۰٪ تخفیف.")
    assert await campaign.get_attribute("dir") == "rtl"
    # No budget on this lead: a visible placeholder the agent can ask about.
    missing = campaign.locator("mark.missing-field")
    await expect(missing).to_have_text("[custom.budget]")
    listed = page.locator(".card.script[data-source=lead_list] .script-text")
    await expect(listed).to_have_text("مریم را در نمایشگاه دیدیم.")
    assert "Hello" not in await campaign.inner_text()

    await world.answer(call)
    card = page.locator(".call-card[data-phase=answered]")
    await card.wait_for()

    # The knowledge base, while talking: search, read, and the call card stays usable.
    await page.keyboard.press("k")
    panel = page.locator("#kb-panel")
    await expect(panel).to_be_visible()
    await expect(page.locator("#kb-q")).to_be_focused()
    await page.fill("#kb-q", "بازگشت")
    await page.press("#kb-q", "Enter")
    results = page.locator("#kb-results li")
    await expect(results).to_have_count(1)  # the unapproved draft is not offered to agents
    await expect(results.first.locator(".kb-snippet")).to_have_text(
        "تا هفت روز پس از خرید، کالا با فاکتور پس گرفته می‌شود."
    )
    # The results came in under the search box: the cursor is still there, for the next try.
    await expect(page.locator("#kb-q")).to_be_focused()
    await expect(page.locator("#kb-q")).to_have_value("بازگشت")
    await results.first.locator("button.kb-open").click()
    await expect(page.locator(f".kb-article[data-id='{article_id}'] h3")).to_have_text(
        "شرایط بازگشت کالا"
    )
    await expect(page.locator(".kb-article .kb-body")).to_contain_text("تا هفت روز پس از خرید")
    await card.locator("textarea[name=note]").fill("مشتری درباره بازگشت کالا پرسید")
    await expect(card.locator("textarea[name=note]")).to_have_value(
        "مشتری درباره بازگشت کالا پرسید"
    )
    await expect(card).to_have_attribute("data-phase", "answered")
    await page.screenshot(path=str(_shot("desktop-kb-during-call")), full_page=False)

    await page.click("#kb-toggle")
    await expect(panel).to_be_hidden()
    world.hang_up(call)
    await page.wait_for_selector(".call-card[data-phase=ended]")
    assert page.js_errors == []


def _shot(name: str):
    from tests.desktop_kit import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
