"""Campaign results equal what the raw records hold: customers reached, responded and
converted counted once each, revenue from won deals in the campaign's currency, ROI from
the cost; the comparison picks the best campaign per figure; the API serves the same."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import text

from crm.campaigns.responses import NON_RESPONSE_DISPOSITIONS
from crm.campaigns.results import campaign_results, compare
from crm.models import (
    Account,
    Activity,
    Campaign,
    Contact,
    Deal,
    EmailMessage,
    Lead,
    Stage,
)
from tests.crm_fixtures import make_pipeline

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


async def seed(db):
    """An e-mail campaign and a call campaign with every kind of row that counts or not."""
    pipeline_id = await make_pipeline(db)
    async with db.session() as s:
        from sqlalchemy import select

        stages = {st.name: st.id for st in await s.scalars(select(Stage))}
        contacts = [Contact(first_name=f"C{i}", email=f"c{i}@example.com") for i in range(8)]
        account = Account(name="Acme")
        lead = Lead(first_name="L")
        s.add_all([*contacts, account, lead])
        await s.flush()
        mail = Campaign(name="Mail", channel="email", cost=Decimal(1000), budget=Decimal(5000))
        calls = Campaign(name="Calls", channel="call", cost=Decimal(0))
        s.add_all([mail, calls])
        await s.flush()
        c = [x.id for x in contacts]
        for cid, status, opened, clicked, replied in (
            (c[0], "sent", True, True, False),
            (c[1], "sent", True, False, False),
            (c[2], "bounced", False, False, False),
            (c[3], "skipped", False, False, False),
            (c[4], "sent", False, False, True),
            (c[5], "queued", False, False, False),
            (c[6], "failed", False, False, False),
            (c[7], "sent", True, True, True),
        ):
            s.add(
                EmailMessage(
                    campaign_id=mail.id,
                    entity_type="contact",
                    entity_id=cid,
                    status=status,
                    to_address=f"x{cid}@example.com",
                    opened_at=T0 if opened else None,
                    clicked_at=T0 if clicked else None,
                    replied_at=T0 if replied else None,
                    unsubscribed_at=T0 if cid == c[1] else None,
                )
            )

        def deal(
            campaign, amount, status, contact=None, account_id=None, currency="IRR", deleted=False
        ):
            stage = {"won": "Won", "lost": "Lost", "open": "Qualify"}[status]
            return Deal(
                title="d",
                pipeline_id=pipeline_id,
                stage_id=stages[stage],
                amount=Decimal(amount),
                status=status,
                currency=currency,
                contact_id=contact,
                account_id=account_id,
                campaign_id=campaign,
                deleted_at=T0 if deleted else None,
            )

        s.add_all(
            [
                deal(mail.id, 5000, "won", c[0]),
                deal(mail.id, 2000, "won", c[0]),
                deal(mail.id, 9000, "lost", c[1]),
                deal(mail.id, 1500, "won", account_id=account.id),
                deal(mail.id, 700, "won"),  # no customer on it: counted by itself
                deal(mail.id, 50, "won", c[4], currency="USD"),
                deal(mail.id, 777, "won", c[4], deleted=True),
                deal(mail.id, 400, "open", c[7]),
                deal(calls.id, 300, "won", c[2]),
                deal(None, 99999, "won", c[0]),
            ]
        )
        s.add_all(
            [
                Lead(first_name="Conv1", campaign_id=mail.id, converted_at=T0),
                Lead(first_name="Conv2", campaign_id=mail.id, converted_at=T0, deleted_at=T0),
                Lead(first_name="NotYet", campaign_id=mail.id),
            ]
        )

        def call(
            customer=None,
            answered=True,
            disposition=None,
            number=None,
            deleted=False,
            lead_id=None,
            campaign=calls.id,
        ):
            return Activity(
                kind="call",
                contact_id=customer,
                lead_id=lead_id,
                campaign_id=campaign,
                occurred_at=T0,
                started_at=T0,
                answered_at=T0 if answered else None,
                disposition=disposition,
                external_number=number,
                deleted_at=T0 if deleted else None,
                direction="outbound",
            )

        s.add_all(
            [
                call(c[0], True, "sale"),
                call(c[0], True, "follow_up"),
                call(c[1], False),
                call(c[2], True, "not_interested"),
                call(c[3], True, None),
                call(None, True, "sale", number="+989120000001"),
                call(None, True, "sale", number="+989120000001"),
                call(None, False, None, number="+989120000002"),
                call(c[5], True, "sale", deleted=True),
                call(lead_id=lead.id, answered=True, disposition="callback"),
                call(c[6], True, "sale", campaign=None),
            ]
        )
        return mail.id, calls.id


async def raw(db, sql, **params):
    async with db.session() as s:
        return (await s.execute(text(sql), params)).all()


async def expected(db, campaign_id):
    """The figures worked out in Python from the raw rows (no shared code with results)."""
    camp = (await raw(db, "SELECT cost, currency FROM campaigns WHERE id = :c", c=campaign_id))[0]
    msgs = await raw(
        db,
        "SELECT entity_type, entity_id, status, opened_at, clicked_at, replied_at,"
        " unsubscribed_at FROM email_messages WHERE campaign_id = :c",
        c=campaign_id,
    )
    calls = await raw(
        db,
        "SELECT contact_id, lead_id, account_id, external_number, answered_at, disposition"
        " FROM activities WHERE kind = 'call' AND campaign_id = :c AND deleted_at IS NULL",
        c=campaign_id,
    )
    deals = await raw(
        db,
        "SELECT id, contact_id, account_id, amount, currency FROM deals"
        " WHERE campaign_id = :c AND status = 'won' AND deleted_at IS NULL",
        c=campaign_id,
    )

    def call_key(r):
        if r[0] is not None:
            return ("contact", r[0])
        if r[1] is not None:
            return ("lead", r[1])
        if r[2] is not None:
            return ("account", r[2])
        return ("number", r[3])

    targeted = {(m[0], m[1]) for m in msgs if m[2] != "skipped"} | {call_key(r) for r in calls}
    reached = {(m[0], m[1]) for m in msgs if m[2] == "sent"} | {
        call_key(r) for r in calls if r[4] is not None
    }
    responded = {(m[0], m[1]) for m in msgs if m[4] is not None or m[5] is not None} | {
        call_key(r)
        for r in calls
        if r[4] is not None and r[5] is not None and r[5] not in NON_RESPONSE_DISPOSITIONS
    }
    converted = {
        ("c", d[1]) if d[1] is not None else ("a", d[2]) if d[2] is not None else ("d", d[0])
        for d in deals
    }
    revenue = sum((Decimal(str(d[3])) for d in deals if d[4] == camp[1]), Decimal(0))
    cost = Decimal(str(camp[0]))
    return {
        "targeted": len(targeted),
        "reached": len(reached),
        "responded": len(responded),
        "converted": len(converted),
        "won_deals": len(deals),
        "revenue": revenue,
        "roi": None if not cost else round(float((revenue - cost) / cost), 4),
        "opened": sum(1 for m in msgs if m[3] is not None),
        "clicked": sum(1 for m in msgs if m[4] is not None),
        "replied": sum(1 for m in msgs if m[5] is not None),
        "unsubscribed": sum(1 for m in msgs if m[6] is not None),
        "bounced": sum(1 for m in msgs if m[2] == "bounced"),
        "attempts": len(calls),
        "answered": sum(1 for r in calls if r[4] is not None),
    }


async def test_results_equal_the_raw_records(db):
    mail_id, calls_id = await seed(db)
    for cid in (mail_id, calls_id):
        want = await expected(db, cid)
        async with db.session() as s:
            got = await campaign_results(s, await s.get(Campaign, cid))
        assert got.targeted == want["targeted"], cid
        assert got.reached == want["reached"], cid
        assert got.responded == want["responded"], cid
        assert got.converted == want["converted"], cid
        assert got.won_deals == want["won_deals"], cid
        assert got.revenue == want["revenue"], cid
        assert got.roi == want["roi"], cid
        if got.email:
            for key in ("opened", "clicked", "replied", "unsubscribed", "bounced"):
                assert got.email[key] == want[key], (cid, key)
        if got.calls:
            assert got.calls == {"attempts": want["attempts"], "answered": want["answered"]}


async def test_the_mail_campaign_figures_and_its_roi(db):
    mail_id, _ = await seed(db)
    async with db.session() as s:
        got = await campaign_results(s, await s.get(Campaign, mail_id))
    # Read straight off the seed: 5000 + 2000 + 1500 + 700 IRR won; 50 USD apart.
    assert got.revenue == Decimal(9200)
    assert got.revenue_other_currencies == {"USD": "50.00"}
    assert got.roi == round((9200 - 1000) / 1000, 4)
    assert (got.targeted, got.reached, got.responded, got.converted) == (7, 4, 3, 4)
    assert got.leads_converted == 1
    assert got.reach_rate == round(4 / 7, 4)
    assert got.email["messages"] == 8 and got.email["skipped"] == 1
    assert got.email["queued"] == 1 and got.email["failed"] == 1


async def test_comparison_names_the_best_campaign_per_figure(db):
    mail_id, calls_id = await seed(db)
    async with db.session() as s:
        results = [
            await campaign_results(s, await s.get(Campaign, cid)) for cid in (mail_id, calls_id)
        ]
    out = compare(results)
    calls = results[1]
    assert [i["campaign_id"] for i in out["items"]] == [mail_id, calls_id]
    assert out["best"]["revenue"] == mail_id
    assert out["best"]["roi"] == mail_id  # the call campaign has no cost: no ROI
    assert calls.roi is None
    assert results[0].reached != calls.reached
    best_reach = mail_id if results[0].reached > calls.reached else calls_id
    assert out["best"]["reached"] == best_reach
    # A tie has no best (a 0 beside a 0 is not highlighted as a winner).
    tie = compare([results[0], results[0]])
    assert set(tie["best"].values()) == {None}


async def test_results_and_comparison_over_the_api(api):
    admin = await api.actor("boss", "admin")
    mail_id, calls_id = await seed(api.db)
    one = await api.call("GET", f"/api/v1/campaigns/{mail_id}/results", admin)
    assert one["revenue"] == "9200.00" and one["cost"] == "1000.00"
    assert one["reached"] == 4 and one["roi"] == 8.2
    both = await api.call("GET", f"/api/v1/campaigns/compare?ids={mail_id},{calls_id}", admin)
    assert [i["name"] for i in both["items"]] == ["Mail", "Calls"]
    assert both["best"]["roi"] == mail_id
    bad = await api.call("GET", "/api/v1/campaigns/compare?ids=1,x", admin, expect=422)
    assert bad["errors"][0]["field"] == "ids"
    await api.call("GET", "/api/v1/campaigns/compare?ids=999", admin, expect=404)
    # An agent may look at campaign results, not launch or edit them.
    agent = await api.actor("ann", "agent")
    await api.call("GET", f"/api/v1/campaigns/{mail_id}/results", agent)
    await api.call("POST", f"/api/v1/campaigns/{mail_id}/send", agent, expect=403)
