"""The knowledge base: articles in Persian and English, categories, drafts and an approved
current version (supervisors and admins approve; agents see only approved text), folded
full-text search on SQLite (FTS5) and PostgreSQL (trigram), and an audit trail."""

from __future__ import annotations

from sqlalchemy import select

from crm.models import AuditEntry

KB = "/api/v1/kb"


async def _people(api):
    admin = await api.actor("admin", "admin")
    team = (
        await api.call("POST", "/api/v1/teams", admin, 201, json={"name": "Sales", "queue": "s"})
    )["id"]
    boss = await api.actor("boss", "supervisor", team_ids=[team])
    sara = await api.actor("sara", "agent", team_ids=[team])
    return admin, boss, sara


async def _search(api, who, q, **params):
    query = "&".join(f"{k}={v}" for k, v in {"q": q, **params}.items())
    return (await api.call("GET", f"{KB}/articles?{query}", who))["items"]


async def test_a_draft_is_invisible_to_agents_until_a_supervisor_approves_it(api):
    _, boss, sara = await _people(api)
    cat = await api.call(
        "POST", f"{KB}/categories", boss, 201, json={"name_fa": "بازپرداخت", "name_en": "Refunds"}
    )
    art = await api.call(
        "POST",
        f"{KB}/articles",
        boss,
        201,
        json={
            "title": "شرایط بازگشت کالا",
            "body": "مشتری می‌تواند تا هفت روز کالا را برگرداند.\nهزینه ارسال با فروشگاه است.",
            "language": "fa",
            "category_id": cat["id"],
        },
    )
    assert art["approved"] is False and art["draft"]["status"] == "draft"
    assert art["versions"] == [{**art["versions"][0], "number": 1, "status": "draft"}]
    # The agent finds nothing and may not open it.
    assert await _search(api, sara, "بازگشت") == []
    await api.call("GET", f"{KB}/articles/{art['id']}", sara, 404)
    # The author sees the draft when asking for drafts.
    drafts = await _search(api, boss, "بازگشت", drafts=1)
    assert [d["id"] for d in drafts] == [art["id"]] and drafts[0]["approved"] is False
    # Agents may neither write nor approve.
    await api.call("POST", f"{KB}/articles", sara, 403, json={"title": "x", "body": "y"})
    await api.call("POST", f"{KB}/versions/{art['draft']['id']}/approve", sara, 403, json={})
    approved = await api.call(
        "POST", f"{KB}/versions/{art['draft']['id']}/approve", boss, json={"note": "ok"}
    )
    assert approved["approved"] is True and approved["current"]["status"] == "approved"
    # Now the agent finds it, with Arabic letters and without the half-space, and reads it.
    for query in ("بازگشت", "كالا", "مي خواهم مي‌تواند", "هفت"):
        found = await _search(api, sara, query)
        if query.startswith("مي خواهم"):
            assert found == []  # every word must match
            continue
        assert [f["id"] for f in found] == [art["id"]], query
    hit = (await _search(api, sara, "هزینه ارسال"))[0]
    assert hit["snippet"] == "هزینه ارسال با فروشگاه است."
    assert hit["category"]["name_en"] == "Refunds"
    body = await api.call("GET", f"{KB}/articles/{art['id']}", sara)
    assert body["title"] == "شرایط بازگشت کالا" and "هفت روز" in body["body"]
    assert "versions" not in body and "draft" not in body  # agents get the approved text only
    # The category's name is searchable too, in both languages.
    assert [f["id"] for f in await _search(api, sara, "refunds")] == [art["id"]]


async def test_a_new_version_stays_a_draft_and_agents_keep_reading_the_approved_one(api):
    admin, boss, sara = await _people(api)
    art = await api.call(
        "POST",
        f"{KB}/articles",
        boss,
        201,
        json={"title": "Warranty", "body": "Two years on every device.", "language": "en"},
    )
    await api.call("POST", f"{KB}/versions/{art['draft']['id']}/approve", boss, json={})
    v2 = await api.call(
        "POST",
        f"{KB}/articles/{art['id']}/versions",
        boss,
        201,
        json={"title": "Warranty", "body": "Three years on every laptop.", "note": "new policy"},
    )
    assert v2["number"] == 2 and v2["status"] == "draft"
    # Agents still read version 1 and cannot find the draft's words.
    seen = await api.call("GET", f"{KB}/articles/{art['id']}", sara)
    assert seen["version"] == 1 and seen["body"] == "Two years on every device."
    assert await _search(api, sara, "laptop") == []
    assert [a["id"] for a in await _search(api, sara, "device")] == [art["id"]]
    # Authors can read the draft and edit it in place.
    await api.call("GET", f"{KB}/versions/{v2['id']}", sara, 404)
    edited = await api.call(
        "PATCH", f"{KB}/versions/{v2['id']}", boss, json={"body": "Three years on laptops."}
    )
    assert edited["body"] == "Three years on laptops."
    drafts = await _search(api, boss, "laptops", drafts=1)
    assert drafts[0]["draft_version_id"] == v2["id"] and drafts[0]["snippet"].startswith("Three")
    # Approved: agents now read version 2; version 1 is superseded and cannot be edited.
    await api.call("POST", f"{KB}/versions/{v2['id']}/approve", admin, json={})
    seen = await api.call("GET", f"{KB}/articles/{art['id']}", sara)
    assert seen["version"] == 2 and seen["body"] == "Three years on laptops."
    assert [a["id"] for a in await _search(api, sara, "laptops")] == [art["id"]]
    assert await _search(api, sara, "device") == []
    full = await api.call("GET", f"{KB}/articles/{art['id']}", boss)
    assert [(v["number"], v["status"]) for v in full["versions"]] == [
        (1, "superseded"),
        (2, "approved"),
    ]
    await api.call(
        "PATCH", f"{KB}/versions/{art['draft']['id']}", boss, 409, json={"body": "rewrite"}
    )
    # Rolling back is approving the old version again.
    await api.call("POST", f"{KB}/versions/{art['draft']['id']}/approve", boss, json={})
    seen = await api.call("GET", f"{KB}/articles/{art['id']}", sara)
    assert seen["version"] == 1
    actions = await _audit(api, art["id"])
    assert actions == ["create", "approve", "draft", "update", "approve", "approve"]


async def _audit(api, article_id):
    async with api.db.session() as s:
        rows = await s.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.entity_type == "kb_article", AuditEntry.entity_id == article_id)
            .order_by(AuditEntry.id)
        )
        return list(rows)


async def test_rejecting_and_archiving(api):
    _, boss, sara = await _people(api)
    art = await api.call(
        "POST",
        f"{KB}/articles",
        boss,
        201,
        json={"title": "ساعات کاری", "body": "شنبه تا چهارشنبه ۸ تا ۱۷", "language": "fa"},
    )
    rejected = await api.call(
        "POST", f"{KB}/versions/{art['draft']['id']}/reject", boss, json={"note": "ناقص"}
    )
    assert rejected["status"] == "rejected" and rejected["note"] == "ناقص"
    await api.call("POST", f"{KB}/versions/{art['draft']['id']}/approve", boss, 409, json={})
    v2 = await api.call(
        "POST",
        f"{KB}/articles/{art['id']}/versions",
        boss,
        201,
        json={"title": "ساعات کاری", "body": "شنبه تا پنجشنبه ۸ تا ۱۷"},
    )
    await api.call("POST", f"{KB}/versions/{v2['id']}/approve", boss, json={})
    # Digits fold: Latin digits find the Persian ones.
    assert [a["id"] for a in await _search(api, sara, "17")] == [art["id"]]
    await api.call("DELETE", f"{KB}/articles/{art['id']}", sara, 403)
    await api.call("DELETE", f"{KB}/articles/{art['id']}", boss, 204)
    assert await _search(api, sara, "پنجشنبه") == []
    assert await _search(api, boss, "پنجشنبه", drafts=1) == []
    await api.call("GET", f"{KB}/articles/{art['id']}", boss, 404)


async def test_listing_filters_by_language_and_category_and_ranks_title_hits_first(api):
    _, boss, sara = await _people(api)
    billing = await api.call(
        "POST", f"{KB}/categories", boss, 201, json={"name_fa": "صورتحساب", "name_en": "Billing"}
    )
    made = []
    for title, body, lang, cat in (
        ("Invoice copies", "Send the invoice again from the portal.", "en", billing["id"]),
        ("Payment methods", "Cards, transfer, or invoice on delivery.", "en", None),
        ("صدور فاکتور", "فاکتور رسمی با کد اقتصادی صادر می‌شود. invoice", "fa", billing["id"]),
    ):
        a = await api.call(
            "POST",
            f"{KB}/articles",
            boss,
            201,
            json={"title": title, "body": body, "language": lang, "category_id": cat},
        )
        await api.call("POST", f"{KB}/versions/{a['draft']['id']}/approve", boss, json={})
        made.append(a["id"])
    everything = await _search(api, sara, "invoice")
    assert set(a["id"] for a in everything) == set(made)
    assert everything[0]["id"] == made[0]  # the title says it
    english = await _search(api, sara, "invoice", language="en")
    assert {a["id"] for a in english} == {made[0], made[1]}
    in_billing = await _search(api, sara, "invoice", category_id=billing["id"])
    assert {a["id"] for a in in_billing} == {made[0], made[2]}
    browse = await _search(api, sara, "", category_id=billing["id"])
    assert {a["id"] for a in browse} == {made[0], made[2]}
    cats = await api.call("GET", f"{KB}/categories", sara)
    assert [c["name_en"] for c in cats["items"]] == ["Billing"]
    await api.call("GET", f"{KB}/articles?language=de", sara, 422)
    await api.call("POST", f"{KB}/categories", sara, 403, json={"name_fa": "x", "name_en": "x"})
