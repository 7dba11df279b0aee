"""Call scripts: templates with the customer's fields filled in, per campaign and lead list,
in Persian and English, escaped, with a visible placeholder for a missing field and masked
values for users who may not see them; a script never breaks, whatever its author typed."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import jdatetime
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.knowledge import templates

# -- the template language (pure) -------------------------------------------------------------


def test_fields_are_filled_in_and_a_fallback_covers_an_empty_one():
    out = templates.render(
        "سلام {{ first_name }} از {{account.name}}، {{ nickname | دوست عزیز }}!",
        {"first_name": "علی", "account.name": "شرکت نمونه", "nickname": ""},
    )
    assert out.text == "سلام علی از شرکت نمونه، دوست عزیز!"
    assert out.missing == [] and out.problems == []
    assert [s.field for s in out.segments if s.field] == ["first_name", "account.name", "nickname"]


def test_a_missing_field_is_a_visible_placeholder_and_is_listed():
    out = templates.render("Hello {{first_name}} {{custom.budget}}", {"first_name": None})
    assert out.text == "Hello [first_name] [custom.budget]"
    assert out.missing == ["first_name", "custom.budget"]
    assert all(s.missing for s in out.segments if s.field)


def test_only_the_section_of_the_rendered_language_is_kept():
    source = "{{#fa}}سلام {{first_name}}{{/fa}}{{#en}}Hello {{first_name}}{{/en}}. 1"
    values = {"first_name": "Sara"}
    assert templates.render(source, values, "fa").text == "سلام Sara. 1"
    assert templates.render(source, values, "en").text == "Hello Sara. 1"


def test_typos_stay_as_text_and_are_reported_never_raised():
    out = templates.render("a {{ 1bad }} b {{#fa}} c {{/en}} d {{ first_name", {})
    assert "{{ 1bad }}" in out.text and "{{/en}}" in out.text and "{{ first_name" in out.text
    assert len(out.problems) == 4  # bad field, unmatched tag, unclosed {{, unclosed section
    assert "c" in out.text  # an unclosed section loses no words


def test_html_rendering_escapes_the_template_and_the_values():
    out = templates.render(
        "<b>{{first_name}}</b> {{last_name}}", {"first_name": "<script>alert(1)</script>"}
    )
    assert "<script>" not in out.html and "<b>" not in out.html
    assert "&lt;script&gt;" in out.html and "&lt;b&gt;" in out.html
    assert '<mark class="missing-field" data-field="last_name">[last_name]</mark>' in out.html


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}#/|. ab_1فا\n")), max_size=60))
def test_any_text_renders_without_error(source):
    out = templates.render(source, {"a": "X", "ab": "Y"}, "fa")
    assert isinstance(out.text, str)
    # Nothing the author typed is lost outside a language section of the other language.
    if "{{" not in source:
        assert out.text == source


# -- rendering for a customer through the API -------------------------------------------------


async def _setup(api):
    admin = await api.actor("admin", "admin")
    team = (
        await api.call("POST", "/api/v1/teams", admin, 201, json={"name": "Sales", "queue": "q"})
    )["id"]
    sara_h = await api.actor("sara", "agent", team_ids=[team])
    sara = await api.call("GET", "/api/v1/me", sara_h)
    await api.call(
        "POST",
        "/api/v1/custom-fields",
        admin,
        201,
        json={
            "entity_type": "contact",
            "key": "plan",
            "field_type": "text",
            "label_en": "Plan",
            "label_fa": "طرح",
        },
    )
    await api.call(
        "POST",
        "/api/v1/custom-fields",
        admin,
        201,
        json={
            "entity_type": "contact",
            "key": "national_id",
            "field_type": "text",
            "label_en": "National id",
            "label_fa": "کد ملی",
            "sensitive": True,
        },
    )
    acme = await api.call("POST", "/api/v1/accounts", admin, 201, json={"name": "آکمه"})
    ali = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        201,
        json={
            "first_name": "علی",
            "last_name": "رضایی",
            "account_id": acme["id"],
            "owner_id": sara["id"],
            "language": "fa",
            "birthday": "1990-03-21",
            "phones": [{"number": "09121234567", "is_primary": True}],
            "custom": {"plan": "طلایی", "national_id": "0012345678"},
        },
    )
    campaign = await api.call(
        "POST",
        "/api/v1/campaigns",
        admin,
        201,
        json={
            "name": "Nowruz",
            "offer": "۲۰٪ تخفیف",
            "call_script": (
                "{{#fa}}سلام {{first_name}} عزیز از {{account.name}}. من {{agent.full_name}} "
                "هستم، همکار {{owner.full_name}}. طرح شما {{custom.plan}} است؛ پیشنهاد "
                "{{campaign.offer}}. تلفن {{phone}}، کد ملی {{national_id}}، تولد {{birthday}}. "
                "{{job_title}}{{/fa}}"
                "{{#en}}Hello {{first_name}} from {{account.name}}, born {{birthday}}.{{/en}}"
            ),
        },
    )
    return admin, sara_h, sara, ali, campaign


async def test_a_campaign_script_is_filled_with_the_customers_fields_in_persian(api):
    _, sara_h, _, ali, campaign = await _setup(api)
    out = await api.call(
        "GET",
        f"/api/v1/scripts/render?contact_id={ali['id']}&campaign_id={campaign['id']}",
        sara_h,
    )
    assert out["language"] == "fa" and out["direction"] == "rtl"  # the customer's language
    [script] = out["scripts"]
    assert script["source"] == "campaign" and script["name"] == "Nowruz"
    text = script["text"]
    assert text.startswith("سلام علی عزیز از آکمه. من Sara هستم، همکار Sara.")
    assert "طرح شما طلایی است" in text and "پیشنهاد ۲۰٪ تخفیف" in text
    assert "تولد ۱۳۶۹/۰۱/۰۱" in text  # Jalali, Persian digits (21 March 1990)
    # The agent's role masks phones and sensitive custom fields: so does the script.
    assert "09121234567" not in text and "+989121234567" not in text
    assert "+98912****567" in text
    assert "0012345678" not in text and "کد ملی ****" in text
    masked = {s["field"] for s in script["segments"] if s.get("masked")}
    assert {"phone", "national_id"} <= masked
    # No job title on the record: a visible placeholder, not a crash or an empty string.
    assert script["missing"] == ["job_title"] and text.endswith("[job_title]")
    assert "Hello" not in text


async def test_an_admin_sees_the_values_the_agent_sees_masked_and_english_on_request(api):
    admin, _, _, ali, campaign = await _setup(api)
    base = f"/api/v1/scripts/render?contact_id={ali['id']}&campaign_id={campaign['id']}"
    fa = (await api.call("GET", base, admin))["scripts"][0]["text"]
    assert "+989121234567" in fa and "کد ملی 0012345678" in fa
    en = await api.call("GET", base + "&lang=en", admin)
    assert en["direction"] == "ltr"
    assert en["scripts"][0]["text"] == "Hello علی from آکمه, born 1990-03-21."


async def test_a_lead_brings_its_lead_list_and_campaign_scripts(api):
    admin = await api.actor("admin", "admin")
    ll = await api.call(
        "POST",
        "/api/v1/lead-lists",
        admin,
        201,
        json={"name": "Expo", "call_script": "{{first_name}} at {{account.name}} ({{rating}})"},
    )
    camp = await api.call(
        "POST",
        "/api/v1/campaigns",
        admin,
        201,
        json={"name": "Spring", "call_script": "Offer for {{company}}: {{campaign.name}}"},
    )
    lead = await api.call(
        "POST",
        "/api/v1/leads",
        admin,
        201,
        json={
            "first_name": "Maryam",
            "company": "Globex",
            "lead_list_id": ll["id"],
            "campaign_id": camp["id"],
            "language": "en",
        },
    )
    out = await api.call("GET", f"/api/v1/scripts/render?lead_id={lead['id']}", admin)
    assert [s["source"] for s in out["scripts"]] == ["campaign", "lead_list"]
    assert out["scripts"][0]["text"] == "Offer for Globex: Spring"
    assert out["scripts"][1]["text"] == "Maryam at Globex ([rating])"
    assert out["scripts"][1]["missing"] == ["rating"]


async def test_a_record_out_of_the_agents_scope_is_not_rendered(api):
    admin = await api.actor("admin", "admin")
    reza = await api.actor("reza", "agent")
    omid = await api.call("GET", "/api/v1/me", await api.actor("omid", "agent"))
    theirs = await api.call(
        "POST",
        "/api/v1/contacts",
        admin,
        201,
        json={"first_name": "Secret", "owner_id": omid["id"]},
    )
    await api.call("GET", f"/api/v1/scripts/render?contact_id={theirs['id']}", reza, 404)
    await api.call("GET", "/api/v1/scripts/render?contact_id=x", reza, 422)
    await api.call("GET", "/api/v1/scripts/render?contact_id=1&lead_id=1", reza, 422)


async def test_the_preview_renders_a_draft_template_and_reports_its_typos(api):
    admin, _, _, ali, _ = await _setup(api)
    out = await api.call(
        "POST",
        "/api/v1/scripts/preview",
        admin,
        json={"template": "Hi {{first_name}} {{ oops! }} {{custom.plan}}", "contact_id": ali["id"]},
    )
    [script] = out["scripts"]
    assert script["source"] == "preview"
    assert script["text"] == "Hi علی {{ oops! }} طلایی"
    assert script["problems"] == ["not a field: {{ oops! }}"]
    fields = await api.call("GET", "/api/v1/scripts/fields?entity=contact", admin)
    assert {"first_name", "account.name", "owner.full_name", "custom.plan"} <= set(fields["fields"])


async def test_a_campaign_script_is_set_with_the_campaign_and_dates_follow_the_timezone(api):
    admin = await api.actor("admin", "admin")
    camp = await api.call("POST", "/api/v1/campaigns", admin, 201, json={"name": "C"})
    await api.call(
        "PATCH",
        f"/api/v1/campaigns/{camp['id']}",
        admin,
        json={
            "call_script": "Today {{today}}, starts {{campaign.starts_at}}",
            # 21:00 UTC on 20 March is already 21 March (1 Farvardin) in Tehran.
            "starts_at": "2024-03-19T21:00:00+00:00",
        },
    )
    out = await api.call("GET", f"/api/v1/scripts/render?campaign_id={camp['id']}&lang=fa", admin)
    text = out["scripts"][0]["text"]
    assert text.endswith("starts ۱۴۰۳/۰۱/۰۱")
    day = jdatetime.date.fromgregorian(date=dt.datetime.now(ZoneInfo("Asia/Tehran")).date())
    persian = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
    assert text.startswith(f"Today {day.year:04d}/{day.month:02d}/{day.day:02d}".translate(persian))
    assert out["record"] is None
