"""The campaign API as a manager uses it: segments validated and counted live in the user's
scope, static member lists, bilingual templates with previews, an e-mail campaign set up
and sent over the API, and the campaigns page served."""

from __future__ import annotations

from crm.models import Contact, Tag, Tagging
from tests.campaign_kit import TEMPLATE, gateway_fixture  # noqa: F401  (fixture)


async def seed_contacts(db, owner_ids):
    """Six contacts: customers and prospects, owned by the given users in turn."""
    async with db.session() as s:
        tag = Tag(name="expo")
        s.add(tag)
        rows = []
        for i in range(6):
            c = Contact(
                first_name=f"P{i}",
                email=f"p{i}@example.com",
                lifecycle_stage="customer" if i % 2 == 0 else "prospect",
                language="fa" if i < 3 else "en",
                owner_id=owner_ids[i % len(owner_ids)],
            )
            s.add(c)
            rows.append(c)
        await s.flush()
        for c in rows[:4]:
            s.add(Tagging(tag_id=tag.id, entity_type="contact", entity_id=c.id))
        return [c.id for c in rows]


async def test_segments_are_validated_counted_and_previewed_in_the_users_scope(api):
    boss = await api.actor("boss", "admin")
    agent = await api.actor("ann", "agent")
    me = await api.call("GET", "/api/v1/me", agent)
    admin_me = await api.call("GET", "/api/v1/me", boss)
    ids = await seed_contacts(api.db, [me["id"], admin_me["id"]])

    bad = await api.call(
        "POST",
        "/api/v1/segments",
        boss,
        expect=422,
        json={
            "name": "Broken",
            "filter": {"all": [{"field": "colour", "value": 1}, {"tag": 5}]},
        },
    )
    assert [e["field"] for e in bad["errors"]] == ["filter.all[0].field", "filter.all[1].tag"]
    await api.call("POST", "/api/v1/segments", agent, expect=403, json={"name": "Mine"})

    seg = await api.call(
        "POST",
        "/api/v1/segments",
        boss,
        expect=201,
        json={
            "name": "Expo customers",
            "filter": {"all": [{"tag": "expo"}, {"field": "lifecycle_stage", "value": "customer"}]},
        },
    )
    assert seg["count"] == 2 and seg["kind"] == "dynamic"
    count = await api.call("GET", f"/api/v1/segments/{seg['id']}/count", boss)
    assert count == {
        "segment_id": seg["id"],
        "entity_type": "contact",
        "kind": "dynamic",
        "count": 2,
    }
    preview = await api.call("GET", f"/api/v1/segments/{seg['id']}/preview?limit=1", boss)
    assert preview["count"] == 2 and [i["id"] for i in preview["items"]] == [ids[0]]
    # An unsaved filter is counted live, in the asking user's scope.
    live = await api.call(
        "POST",
        "/api/v1/segments/preview",
        agent,
        json={"entity_type": "contact", "filter": {"tag": "expo"}, "limit": 10},
    )
    # ann owns contacts 0, 2 and 4; of the tagged ones (0..3) she sees 0 and 2.
    assert live["count"] == 2 and sorted(i["id"] for i in live["items"]) == [ids[0], ids[2]]
    assert all(i["phones_masked"] for i in live["items"])
    everyone = await api.call(
        "POST", "/api/v1/segments/preview", boss, json={"filter": {"tag": "expo"}, "limit": 0}
    )
    assert everyone == {"count": 4, "items": []}

    # Editing the filter is validated too; the count follows.
    bad = await api.call(
        "PATCH",
        f"/api/v1/segments/{seg['id']}",
        boss,
        expect=422,
        json={"filter": {"field": "lifecycle_stage", "op": "like", "value": "c"}},
    )
    assert bad["errors"][0]["field"] == "filter.op"
    patched = await api.call(
        "PATCH", f"/api/v1/segments/{seg['id']}", boss, json={"filter": {"tag": "expo"}}
    )
    assert patched["count"] == 4
    history = await api.call("GET", f"/api/v1/segments/{seg['id']}/history", boss)
    assert {h["action"] for h in history["items"]} >= {"create", "update"}

    schema = await api.call("GET", "/api/v1/segments/schema?entity_type=lead", agent)
    names = {f["name"] for f in schema["fields"]}
    assert {"status", "rating", "lead_list_id"} <= names and "deleted_at" not in names
    assert "campaign" in schema["criteria"]


async def test_a_static_segment_keeps_its_members_until_edited(api):
    boss = await api.actor("boss", "admin")
    me = await api.call("GET", "/api/v1/me", boss)
    ids = await seed_contacts(api.db, [me["id"]])
    seg = await api.call(
        "POST",
        "/api/v1/segments",
        boss,
        expect=201,
        json={"name": "Picked", "kind": "static", "member_ids": [ids[5], ids[1]]},
    )
    assert seg["count"] == 2
    out = await api.call(
        "POST",
        f"/api/v1/segments/{seg['id']}/members",
        boss,
        json={"add": [ids[3]], "remove": [ids[1]]},
    )
    assert out["count"] == 2
    preview = await api.call("GET", f"/api/v1/segments/{seg['id']}/preview", boss)
    assert [i["id"] for i in preview["items"]] == [ids[3], ids[5]]
    bad = await api.call(
        "POST",
        f"/api/v1/segments/{seg['id']}/members",
        boss,
        expect=422,
        json={"add": [999999]},
    )
    assert "no contact 999999" in bad["errors"][0]["reason"]
    frozen = await api.call(
        "POST",
        "/api/v1/segments",
        boss,
        expect=201,
        json={"name": "Expo then", "kind": "static", "filter": {"tag": "expo"}},
    )
    assert frozen["count"] == 4
    await api.call(
        "POST", "/api/v1/contacts", boss, expect=201, json={"first_name": "Late", "tags": ["expo"]}
    )
    assert (await api.call("GET", f"/api/v1/segments/{frozen['id']}/count", boss))["count"] == 4
    refreshed = await api.call("POST", f"/api/v1/segments/{frozen['id']}/freeze", boss)
    assert refreshed["count"] == 5
    await api.call("DELETE", f"/api/v1/segments/{frozen['id']}", boss, expect=204)
    await api.call("GET", f"/api/v1/segments/{frozen['id']}/count", boss, expect=404)


async def test_templates_are_checked_and_previewed_in_the_customers_language(api):
    boss = await api.actor("boss", "admin")
    me = await api.call("GET", "/api/v1/me", boss)
    ids = await seed_contacts(api.db, [me["id"]])
    bad = await api.call(
        "POST",
        "/api/v1/email-templates",
        boss,
        expect=422,
        json={**TEMPLATE, "subject_en": "Hi {{nickname}}", "html_fa": "<p>{{first_name</p>"},
    )
    assert sorted(e["field"] for e in bad["errors"]) == ["html_fa", "subject_en"]
    tpl = await api.call("POST", "/api/v1/email-templates", boss, expect=201, json=TEMPLATE)
    fa = await api.call(
        "POST",
        f"/api/v1/email-templates/{tpl['id']}/preview",
        boss,
        json={"entity_type": "contact", "entity_id": ids[0]},
    )
    assert fa["language"] == "fa" and fa["subject"].startswith("P0 جان")
    assert 'dir="rtl"' in fa["html"] and "<bdi>P0</bdi>" in fa["html"]
    en = await api.call(
        "POST",
        f"/api/v1/email-templates/{tpl['id']}/preview",
        boss,
        json={"entity_type": "contact", "entity_id": ids[4]},
    )
    assert en["language"] == "en" and en["subject"] == "P4, a Nowruz offer for you"
    forced = await api.call(
        "POST",
        f"/api/v1/email-templates/{tpl['id']}/preview",
        boss,
        json={"entity_type": "contact", "entity_id": ids[4], "language": "fa"},
    )
    assert forced["language"] == "fa"
    renamed = await api.call(
        "PATCH", f"/api/v1/email-templates/{tpl['id']}", boss, json={"name": "Nowruz v2"}
    )
    assert renamed["name"] == "Nowruz v2"
    listed = await api.call("GET", "/api/v1/email-templates", boss)
    assert [t["name"] for t in listed["items"]] == ["Nowruz v2"]


async def test_an_email_campaign_is_set_up_sent_and_followed_over_the_api(gateway):
    gw = gateway
    boss = await gw.api.actor("boss", "admin")
    me = await gw.api.call("GET", "/api/v1/me", boss)
    await seed_contacts(gw.db, [me["id"]])
    seg = await gw.api.call(
        "POST",
        "/api/v1/segments",
        boss,
        expect=201,
        json={"name": "Expo", "filter": {"tag": "expo"}},
    )
    tpl = await gw.api.call("POST", "/api/v1/email-templates", boss, expect=201, json=TEMPLATE)
    camp = await gw.api.call(
        "POST",
        "/api/v1/campaigns",
        boss,
        expect=201,
        json={"name": "Expo mail", "channel": "email", "segment_id": seg["id"], "cost": "500"},
    )
    cid = camp["id"]
    await gw.api.call("POST", f"/api/v1/campaigns/{cid}/send", boss, expect=422)  # no template
    setup = await gw.api.call(
        "PUT",
        f"/api/v1/campaigns/{cid}/email",
        boss,
        json={"template_id": tpl["id"], "from_name": "Expo team", "rate_per_minute": 600},
    )
    assert setup["setup"]["rate_per_minute"] == 600 and setup["messages"] == {}
    audience = await gw.api.call("GET", f"/api/v1/campaigns/{cid}/audience", boss)
    assert audience == {"campaign_id": cid, "entity_type": "contact", "count": 4}
    report = await gw.api.call("POST", f"/api/v1/campaigns/{cid}/send", boss, expect=202)
    assert report["queued"] == 4
    await gw.mailer.wait(cid)
    assert sorted(r for m in gw.smtp.messages for r in m.rcpt_tos) == [
        f"p{i}@example.com" for i in range(4)
    ]
    assert all(str(m.message["From"]).startswith("Expo team") for m in gw.smtp.messages)
    status = await gw.api.call("GET", f"/api/v1/campaigns/{cid}/email", boss)
    assert status["status"] == "done" and status["messages"] == {"sent": 4}
    messages = await gw.api.call("GET", f"/api/v1/campaigns/{cid}/messages?limit=3", boss)
    assert len(messages["items"]) == 3 and messages["next_after_id"] is not None
    results = await gw.api.call("GET", f"/api/v1/campaigns/{cid}/results", boss)
    assert results["reached"] == 4 and results["email"]["sent"] == 4
    await gw.api.call("POST", f"/api/v1/campaigns/{cid}/send", boss, expect=409)  # done
    # The template and the segment are in use: they cannot be deleted.
    await gw.api.call("DELETE", f"/api/v1/email-templates/{tpl['id']}", boss, expect=409)
    await gw.api.call("DELETE", f"/api/v1/segments/{seg['id']}", boss, expect=409)
    sup = await gw.api.call("GET", "/api/v1/email/suppressions", boss)
    assert sup == {"items": []}


async def test_the_campaigns_page_is_served_like_the_others(api):
    resp = await api.client.get("/campaigns")
    assert resp.status == 200
    page = await resp.text()
    assert "Content-Security-Policy" in resp.headers
    assert "/js/campaigns.js" in page and '<html lang="fa" dir="rtl">' in page
    script = page.split('src="')[1].split('"')[0]
    js = await api.client.get(script)
    assert js.status == 200 and "segments/preview" in await js.text()
