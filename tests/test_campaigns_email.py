"""E-mail campaigns end to end through a real SMTP server: personal fields in Persian and
English, the pace, opt-outs and suppressions, bounces (DSN and SMTP refusals), unsubscribe
honoured forever, open and click tracking, replies matched to customers, the maildir feed,
the scheduler and what happens when the mail server is away."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import mailbox

from sqlalchemy import func, select

from crm.campaigns.email import inbound
from crm.campaigns.email.maildir import poll_once
from crm.campaigns.email.sender import MailConfig, plan, send_queued
from crm.campaigns.email.throttle import Throttle
from crm.campaigns.email.tokens import Signer
from crm.campaigns.email.transport import SmtpTransport
from crm.campaigns.results import campaign_results
from crm.models import (
    Activity,
    AuditEntry,
    Campaign,
    Contact,
    EmailEvent,
    EmailMessage,
    EmailSuppression,
    InboundEmail,
    Tag,
    Tagging,
)
from tests.campaign_kit import (
    BOUNCES,
    INBOUND_SECRET,
    VirtualClock,
    click_path,
    email_campaign,
    gateway_fixture,  # noqa: F401  (fixture)
    html_of,
    mail_to,
    pixel_path,
    seed_audience,
    text_of,
    unsubscribe_path,
)
from tests.servers import free_port


async def rows(db, campaign_id):
    async with db.session() as s:
        found = await s.scalars(select(EmailMessage).where(EmailMessage.campaign_id == campaign_id))
        return {(m.entity_type, m.entity_id): m for m in found}


async def run(gw, campaign_id, principal=None):
    report = await gw.mailer.launch(campaign_id, principal)
    sent = await gw.mailer.wait(campaign_id)
    return report, sent


async def test_a_campaign_mails_each_customer_in_their_language_through_real_smtp(gateway):
    gw = gateway
    aud = await seed_audience(gw.db)
    cid = await email_campaign(gw.db, aud)
    plan_report, sent = await run(gw, cid, aud.admin.principal)
    assert plan_report.audience == 7
    assert plan_report.queued == 3
    assert plan_report.skipped == {
        "opted_out": 1,
        "no_email": 1,
        "duplicate_address": 1,
        "suppressed": 1,
    }
    assert (sent.sent, sent.bounced, sent.failed, sent.remaining) == (3, 0, 0, 0)
    assert sorted(r for m in gw.smtp.messages for r in m.rcpt_tos) == [
        "ali@example.com",
        "john@example.org",
        "reza@example.com",
    ]

    ali = mail_to(gw.smtp, "ali@example.com")
    assert ali.mail_from == BOUNCES
    assert ali.message["Subject"] == "علی جان، پیشنهاد ویژهٔ Nowruz 1405"
    assert ali.message["To"].addresses[0].display_name == "علی رضایی"
    assert ali.message["From"].addresses[0].display_name == "فروشگاه تماس"
    assert ali.message["Reply-To"] == "sales@shop.example"
    html = html_of(ali)
    assert '<html lang="fa" dir="rtl">' in html
    assert "سلام <bdi>علی رضایی</bdi>،" in html
    assert "<bdi>۲۰٪ تخفیف تا آخر فروردین</bdi>" in html
    assert "لغو اشتراک</a>" in html
    assert "سلام علی رضایی،" in text_of(ali)
    assert "https://crm.shop.example/email/u/" in text_of(ali)

    john = mail_to(gw.smtp, "john@example.org")
    assert john.message["Subject"] == "John, a Nowruz offer for you"
    assert '<html lang="en" dir="ltr">' in html_of(john)
    assert "Dear <bdi>John Smith</bdi>," in html_of(john)
    # Reza's record says Persian: a Latin name inside Persian text, isolated.
    assert "سلام <bdi>Reza Nouri</bdi>،" in html_of(mail_to(gw.smtp, "reza@example.com"))

    by_rcpt = await rows(gw.db, cid)
    ali_row = by_rcpt[("contact", aud.ids["ali"])]
    assert ali_row.status == "sent" and ali_row.sent_at is not None
    assert ali.message["Message-ID"] == f"<{ali_row.message_id}>"
    assert by_rcpt[("contact", aud.ids["john"])].language == "en"
    skipped = {k[1]: m.skip_reason for k, m in by_rcpt.items() if m.status == "skipped"}
    assert skipped == {
        aud.ids["sara"]: "opted_out",
        aud.ids["nomail"]: "no_email",
        aud.ids["twin"]: "duplicate_address",
        aud.ids["leila"]: "suppressed",
    }
    async with gw.db.session() as s:
        camp = await s.get(Campaign, cid)
        assert camp.status == "done"
        results = await campaign_results(s, camp)
    assert (results.targeted, results.reached, results.responded) == (3, 3, 0)
    assert results.email["sent"] == 3 and results.email["skipped"] == 4

    # Launching again mails nobody twice.
    again, _ = await run(gw, cid)
    assert again.queued == 0 and again.already_planned == 7
    assert len(gw.smtp.messages) == 3


async def test_the_pace_is_obeyed_on_a_virtual_clock(gateway):
    gw = gateway
    aud = await seed_audience(gw.db)
    async with gw.db.session() as s:
        for i in range(3):
            c = Contact(first_name=f"Extra{i}", email=f"extra{i}@example.com")
            s.add(c)
            await s.flush()
            tag = await s.scalar(select(Tag).where(Tag.name == "nowruz"))
            s.add(Tagging(tag_id=tag.id, entity_type="contact", entity_id=c.id))
    cid = await email_campaign(gw.db, aud, rate=120)  # one message every 0.5 s
    times: list[float] = []
    real_factory = gw.mailer.transport_factory

    class Timed(SmtpTransport):
        async def send(self, message, sender, recipient):
            times.append(gw.clock.now)
            await super().send(message, sender, recipient)

    def factory():
        t = real_factory()
        timed = Timed(t.host, t.port)
        return timed

    gw.mailer.transport_factory = factory
    _, sent = await run(gw, cid)
    assert sent.sent == 6 == len(gw.smtp.messages)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 5 and all(g >= 0.5 for g in gaps)
    assert sum(gw.clock.slept) >= 2.5  # five waits of half a second


def dsn(
    recipient: str,
    original_id: str | None,
    mid: str,
    failure: tuple[str, str] = ("5.1.1", "550 5.1.1 user unknown"),
) -> bytes:
    """A delivery status notification (RFC 3464) for our message ``original_id`` (None: its
    headers left out), with ``failure`` = (status, diagnostic)."""
    status, diagnostic = failure
    headers = f"Message-ID: <{original_id}>\n" if original_id else ""
    return (
        "From: MAILER-DAEMON@mx.example.org\nTo: bounces@shop.example\n"
        f"Subject: Undelivered Mail Returned to Sender\nMessage-ID: <{mid}@mx>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nSorry.\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n"
        f"--B\nContent-Type: text/rfc822-headers\n\nTo: {recipient}\n{headers}\n--B--\n"
    ).encode()


MAILBOX_FULL = ("4.2.2", "452 4.2.2 mailbox full")  # a soft bounce


async def test_a_dsn_bounce_is_recorded_suppressed_and_never_mailed_again(gateway):
    gw = gateway
    aud = await seed_audience(gw.db)
    cid = await email_campaign(gw.db, aud)
    await run(gw, cid)
    john_row = (await rows(gw.db, cid))[("contact", aud.ids["john"])]
    reza_row = (await rows(gw.db, cid))[("contact", aud.ids["reza"])]

    hook = "/email/inbound"
    secret = {"X-Tamas-Inbound-Secret": INBOUND_SECRET}
    resp = await gw.client.post(hook, data=dsn("john@example.org", john_row.message_id, "d1"))
    assert resp.status == 403  # no secret, nothing recorded
    resp = await gw.client.post(
        hook, data=dsn("john@example.org", john_row.message_id, "d1"), headers=secret
    )
    assert resp.status == 201, await resp.text()
    result = await resp.json()
    assert result["kind"] == "bounce" and result["matched_by"] == "original_message_id"
    assert result["suppressed"] == "john@example.org"
    # The same DSN fed twice is recorded once.
    resp = await gw.client.post(
        hook, data=dsn("john@example.org", john_row.message_id, "d1"), headers=secret
    )
    assert resp.status == 200 and (await resp.json())["duplicate"] is True
    # A DSN without the original headers is matched by the bounced recipient.
    resp = await gw.client.post(hook, data=dsn("reza@example.com", None, "d2"), headers=secret)
    assert (await resp.json())["matched_by"] == "recipient"

    by_rcpt = await rows(gw.db, cid)
    john = by_rcpt[("contact", aud.ids["john"])]
    assert (john.status, john.bounce_kind, john.bounce_status) == ("bounced", "hard", "5.1.1")
    assert by_rcpt[("contact", aud.ids["reza"])].id == reza_row.id
    assert by_rcpt[("contact", aud.ids["reza"])].status == "bounced"
    async with gw.db.session() as s:
        assert await s.get(EmailSuppression, "john@example.org") is not None
        assert (await s.scalar(select(func.count()).select_from(InboundEmail))) == 2
        kinds = list(
            await s.scalars(select(EmailEvent.kind).where(EmailEvent.message_id == john.id))
        )
        assert kinds == ["bounce"]
        results = await campaign_results(s, await s.get(Campaign, cid))
    assert (results.reached, results.email["bounced"]) == (1, 2)

    gw.smtp.clear()
    cid2 = await email_campaign(gw.db, aud, name="Nowruz reminder")
    _, _sent = await run(gw, cid2)
    assert [r for m in gw.smtp.messages for r in m.rcpt_tos] == ["ali@example.com"]
    skipped = {k[1]: m.skip_reason for k, m in (await rows(gw.db, cid2)).items()}
    assert skipped[aud.ids["john"]] == skipped[aud.ids["reza"]] == "suppressed"


async def test_a_recipient_the_server_refuses_is_a_hard_bounce_and_the_rest_go(db, smtp_server):
    from aiosmtpd.controller import Controller

    accepted: list[str] = []

    class Picky:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.startswith("john"):
                return "550 5.1.1 <john@example.org>: no such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            accepted.extend(envelope.rcpt_tos)
            return "250 queued"

    port = free_port()
    controller = Controller(Picky(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        aud = await seed_audience(db)
        cid = await email_campaign(db, aud)
        async with db.session() as s:
            await plan(s, cid, None)
            (await s.get(Campaign, cid)).status = "running"
        clock = VirtualClock()
        report = await send_queued(
            db,
            cid,
            SmtpTransport("127.0.0.1", port),
            Signer("k" * 48),
            MailConfig("news@shop.example", "Shop", "https://crm.shop.example"),
            Throttle(60, clock, clock.sleep),
        )
    finally:
        controller.stop()
    assert (report.sent, report.bounced) == (2, 1)
    assert sorted(accepted) == ["ali@example.com", "reza@example.com"]
    john = (await rows(db, cid))[("contact", aud.ids["john"])]
    assert (john.status, john.bounce_kind) == ("bounced", "hard")
    assert "no such user" in john.error
    async with db.session() as s:
        assert (await s.get(EmailSuppression, "john@example.org")).reason == "bounce"


async def test_an_unsubscribe_is_honoured_forever(gateway):
    gw = gateway
    aud = await seed_audience(gw.db)
    admin = await gw.api.login("boss", "secret-boss")
    cid = await email_campaign(gw.db, aud)
    await run(gw, cid)
    ali_mail = mail_to(gw.smtp, "ali@example.com")
    path = unsubscribe_path(ali_mail)

    # Opening the link only asks (mail scanners follow links); it changes nothing.
    resp = await gw.client.get(path)
    page = await resp.text()
    assert resp.status == 200 and 'method="post"' in page and 'dir="rtl"' in page
    assert "a***@example.com" in page
    async with gw.db.session() as s:
        assert not (await s.get(Contact, aud.ids["ali"])).email_opt_out
    # Confirming (or a mail client's one-click POST) unsubscribes.
    resp = await gw.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert resp.status == 200 and "اشتراک شما لغو شد" in await resp.text()
    resp = await gw.client.post(path)
    assert resp.status == 200  # again: harmless
    async with gw.db.session() as s:
        ali = await s.get(Contact, aud.ids["ali"])
        assert ali.email_opt_out
        sup = await s.get(EmailSuppression, "ali@example.com")
        assert sup.reason == "unsubscribe" and sup.entity_id == ali.id
        entry = await s.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "unsubscribe", AuditEntry.entity_id == ali.id
            )
        )
        assert entry.changes == {"email_opt_out": [False, True]}
        assert entry.detail["source"] == "one_click"
    row = (await rows(gw.db, cid))[("contact", aud.ids["ali"])]
    assert row.unsubscribed_at is not None
    bad = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert (await gw.client.post(bad)).status == 404

    # Someone clears the flag by mistake: the address stays suppressed.
    await gw.api.call(
        "PATCH", f"/api/v1/contacts/{aud.ids['ali']}", admin, json={"email_opt_out": False}
    )
    gw.smtp.clear()
    cid2 = await email_campaign(gw.db, aud, name="Summer")
    await run(gw, cid2)
    sent_to = sorted(r for m in gw.smtp.messages for r in m.rcpt_tos)
    assert sent_to == ["john@example.org", "reza@example.com"]
    assert (await rows(gw.db, cid2))[("contact", aud.ids["ali"])].skip_reason == "suppressed"

    # Checked at send time too: John unsubscribes after a campaign was planned.
    john_path = unsubscribe_path(mail_to(gw.smtp, "john@example.org"))
    gw.smtp.clear()
    cid3 = await email_campaign(gw.db, aud, name="Autumn")
    async with gw.db.session() as s:
        report = await plan(s, cid3, None)
        (await s.get(Campaign, cid3)).status = "running"
    assert report.queued == 2  # john and reza
    assert (await gw.client.post(john_path)).status == 200
    gw.mailer.start(cid3)
    sent = await gw.mailer.wait(cid3)
    assert sent.skipped == {"opted_out": 1} and sent.sent == 1
    assert [r for m in gw.smtp.messages for r in m.rcpt_tos] == ["reza@example.com"]


async def test_opens_and_clicks_are_tracked_through_signed_links(gateway):
    gw = gateway
    aud = await seed_audience(gw.db)
    cid = await email_campaign(gw.db, aud)
    await run(gw, cid)
    ali = mail_to(gw.smtp, "ali@example.com")

    for _ in range(2):
        resp = await gw.client.get(pixel_path(ali))
        assert resp.status == 200 and resp.content_type == "image/gif"
        assert resp.headers["Cache-Control"].startswith("no-store")
    resp = await gw.client.get(click_path(ali), allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "https://shop.example/nowruz?src=mail&x=1"

    # Forged or damaged links: no redirect anywhere, nothing recorded; the pixel still loads.
    resp = await gw.client.get(click_path(ali)[:-4] + "AAAA", allow_redirects=False)
    assert resp.status == 404
    resp = await gw.client.get("/email/o/not-a-token.gif")
    assert resp.status == 200 and resp.content_type == "image/gif"

    row = (await rows(gw.db, cid))[("contact", aud.ids["ali"])]
    assert (row.open_count, row.click_count) == (2, 1)
    assert row.opened_at is not None and row.clicked_at is not None
    async with gw.db.session() as s:
        events = list(
            await s.scalars(
                select(EmailEvent).where(EmailEvent.message_id == row.id).order_by(EmailEvent.id)
            )
        )
        assert [e.kind for e in events] == ["open", "open", "click"]
        assert events[2].detail["url"] == "https://shop.example/nowruz?src=mail&x=1"
        results = await campaign_results(s, await s.get(Campaign, cid))
    assert results.email["opened"] == 1 and results.email["clicked"] == 1
    assert results.responded == 1


async def test_replies_are_matched_to_the_customer_and_the_campaign(gateway):
    gw = gateway
    aud = await seed_audience(gw.db)
    admin = await gw.api.login("boss", "secret-boss")
    cid = await email_campaign(gw.db, aud)
    await run(gw, cid)
    john_row = (await rows(gw.db, cid))[("contact", aud.ids["john"])]

    async def feed(raw: str, expect=201):
        headers = {**admin, "Content-Type": "message/rfc822"}
        return await gw.api.call(
            "POST", "/api/v1/email/inbound", headers, expect=expect, data=raw.encode()
        )

    by_thread = await feed(
        "From: John Smith <john@example.org>\nSubject: Re: a Nowruz offer\n"
        f"In-Reply-To: <{john_row.message_id}>\nMessage-ID: <re-1@example.org>\n\n"
        "Yes, please call me tomorrow.\n"
    )
    assert by_thread["kind"] == "reply" and by_thread["matched_by"] == "references"
    assert by_thread["entity_id"] == aud.ids["john"]
    by_address = await feed(
        "From: reza@example.com\nSubject: question\nMessage-ID: <re-2@example.com>\n\nPrice?\n"
    )
    assert by_address["matched_by"] == "from_address"
    assert by_address["entity_id"] == aud.ids["reza"]
    never_mailed = await feed(
        "From: sara@example.com\nSubject: hello\nMessage-ID: <re-3@example.com>\n\nسلام\n"
    )
    assert never_mailed["matched_by"] == "customer_email"
    assert never_mailed["entity_id"] == aud.ids["sara"]
    stranger = await feed(
        "From: who@nowhere.example\nSubject: hi\nMessage-ID: <re-4@nowhere>\n\nhi\n"
    )
    assert stranger["entity_id"] is None and stranger["activity_id"] is None
    auto = await feed(
        "From: ali@example.com\nSubject: Out of office\nAuto-Submitted: auto-replied\n"
        "Message-ID: <re-5@example.com>\n\nAway until Monday\n"
    )
    assert auto["kind"] == "auto_reply"
    again = await feed(
        "From: John Smith <john@example.org>\nSubject: Re: a Nowruz offer\n"
        f"In-Reply-To: <{john_row.message_id}>\nMessage-ID: <re-1@example.org>\n\nYes\n",
        expect=200,
    )
    assert again["duplicate"] is True

    by_rcpt = await rows(gw.db, cid)
    assert by_rcpt[("contact", aud.ids["john"])].replied_at is not None
    assert by_rcpt[("contact", aud.ids["ali"])].replied_at is None  # auto-replies do not count
    async with gw.db.session() as s:
        notes = list(
            await s.scalars(select(Activity).where(Activity.kind == "note").order_by(Activity.id))
        )
        assert [(n.contact_id, n.campaign_id) for n in notes] == [
            (aud.ids["john"], cid),
            (aud.ids["reza"], cid),
            (aud.ids["sara"], None),
        ]
        assert notes[0].body.strip() == "Yes, please call me tomorrow."
        assert notes[0].details["email_reply"]["email_message_id"] == john_row.id
        assert (await s.scalar(select(func.count()).select_from(InboundEmail))) == 5
        results = await campaign_results(s, await s.get(Campaign, cid))
    assert results.email["replied"] == 2 and results.responded == 2
    timeline = await gw.api.call("GET", f"/api/v1/contacts/{aud.ids['john']}/timeline", admin)
    assert any("a Nowruz offer" in (i.get("subject") or "") for i in timeline["items"])


async def test_a_maildir_of_bounces_and_replies_is_read_once(gateway, tmp_path):
    gw = gateway
    aud = await seed_audience(gw.db)
    cid = await email_campaign(gw.db, aud)
    await run(gw, cid)
    ali_row = (await rows(gw.db, cid))[("contact", aud.ids["ali"])]
    box = mailbox.Maildir(str(tmp_path / "bounces"), create=True)
    box.add(
        "From: MAILER-DAEMON@mx\nSubject: failure notice\nMessage-ID: <nb@mx>\n\n"
        f"550 5.2.1 mailbox disabled\nMessage-ID: <{ali_row.message_id}>\n"
    )
    box.add(
        f"From: ali@example.com\nIn-Reply-To: <{ali_row.message_id}>\n"
        "Message-ID: <r@x>\nSubject: Re\n\nok\n"
    )
    box.add(b"\xff\xfe not even a message")

    async def ingest(raw: bytes):
        async with gw.db.session() as s:
            return await inbound.ingest(s, raw)

    assert await poll_once(tmp_path / "bounces", ingest) == 3
    assert await poll_once(tmp_path / "bounces", ingest) == 0
    assert all("S" in box.get_message(k).get_flags() for k in box.keys())
    row = (await rows(gw.db, cid))[("contact", aud.ids["ali"])]
    assert row.status == "bounced" and row.bounce_kind == "hard"
    assert row.replied_at is not None


async def test_an_unreachable_mail_server_leaves_the_rest_queued_for_the_next_run(db):
    aud = await seed_audience(db)
    cid = await email_campaign(db, aud)
    async with db.session() as s:
        await plan(s, cid, None)
        (await s.get(Campaign, cid)).status = "running"
        # A message left "sending" by a crash is not sent again.
        first = await s.scalar(
            select(EmailMessage)
            .where(EmailMessage.campaign_id == cid, EmailMessage.status == "queued")
            .limit(1)
        )
        first.status = "sending"
    clock = VirtualClock()
    config = MailConfig("news@shop.example", "Shop", "https://crm.shop.example")
    report = await send_queued(
        db,
        cid,
        SmtpTransport("127.0.0.1", free_port(), timeout=2),
        Signer("k" * 48),
        config,
        Throttle(60, clock, clock.sleep),
    )
    assert report.stopped == "unavailable" and report.sent == 0 and report.remaining == 2
    by_rcpt = await rows(db, cid)
    statuses = sorted(m.status for m in by_rcpt.values() if m.status != "skipped")
    assert statuses == ["failed", "queued", "queued"]
    errors = [m.error for m in by_rcpt.values() if m.status == "queued"]
    assert sum("cannot connect" in (e or "") for e in errors) == 1  # the one it tried


async def test_a_scheduled_campaign_starts_when_due(gateway):
    gw = gateway
    aud = await seed_audience(gw.db)
    later = await email_campaign(
        gw.db,
        aud,
        name="Later",
        status="scheduled",
        starts_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
    )
    due = await email_campaign(
        gw.db,
        aud,
        name="Due",
        status="scheduled",
        starts_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
    )
    assert await gw.mailer.tick() == [due]
    await gw.mailer.wait(due)
    async with gw.db.session() as s:
        assert (await s.get(Campaign, due)).status == "done"
        assert (await s.get(Campaign, later)).status == "scheduled"
    assert len(gw.smtp.messages) == 3
    await asyncio.sleep(0)


async def test_each_message_goes_to_the_address_the_customer_has_when_it_is_sent(db, smtp_server):
    smtp_server.clear()
    aud = await seed_audience(db)
    cid = await email_campaign(db, aud)
    async with db.session() as s:
        await plan(s, cid, None)
        (await s.get(Campaign, cid)).status = "running"
        (await s.get(Contact, aud.ids["reza"])).email = "Reza.New@example.com"
        (await s.get(Contact, aud.ids["john"])).email = "leila@example.com"  # suppressed
    clock = VirtualClock()
    report = await send_queued(
        db,
        cid,
        SmtpTransport(smtp_server.host, smtp_server.port),
        Signer("k" * 48),
        MailConfig("news@shop.example", "Shop", "https://crm.shop.example"),
        Throttle(60, clock, clock.sleep),
    )
    assert report.sent == 2 and report.skipped == {"suppressed": 1}
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "ali@example.com",
        "reza.new@example.com",
    ]
    assert (await rows(db, cid))[("contact", aud.ids["reza"])].to_address == (
        "reza.new@example.com"
    )


async def test_two_senders_at_once_never_mail_anyone_twice(db, smtp_server):
    """Two runs of one campaign (two gateways, or a resume racing a launch) share the
    queue: each message is claimed by exactly one of them."""
    smtp_server.clear()
    aud = await seed_audience(db)
    async with db.session() as s:
        tag = await s.scalar(select(Tag).where(Tag.name == "nowruz"))
        for i in range(9):
            c = Contact(first_name=f"Many{i}", email=f"many{i}@example.com")
            s.add(c)
            await s.flush()
            s.add(Tagging(tag_id=tag.id, entity_type="contact", entity_id=c.id))
    cid = await email_campaign(db, aud)
    async with db.session() as s:
        await plan(s, cid, None)
        (await s.get(Campaign, cid)).status = "running"
    config = MailConfig("news@shop.example", "Shop", "https://crm.shop.example")

    async def one_run():
        clock = VirtualClock()
        return await send_queued(
            db,
            cid,
            SmtpTransport(smtp_server.host, smtp_server.port),
            Signer("k" * 48),
            config,
            Throttle(6000, clock, clock.sleep),
        )

    first, second = await asyncio.gather(one_run(), one_run())
    assert first.sent + second.sent == 12
    rcpts = [r for m in smtp_server.messages for r in m.rcpt_tos]
    assert len(rcpts) == len(set(rcpts)) == 12
    assert {m.status for m in (await rows(db, cid)).values()} == {"sent", "skipped"}


async def test_an_address_that_bounces_soft_three_times_in_a_row_is_suppressed(gateway):
    """A mailbox full for weeks: after the third soft bounce in a row it is not mailed
    again; one message delivered in between starts the count again."""
    gw = gateway
    aud = await seed_audience(gw.db)
    secret = {"X-Tamas-Inbound-Secret": INBOUND_SECRET}

    async def campaign(n: int, bounce: bool) -> dict:
        cid = await email_campaign(gw.db, aud, name=f"Offer {n}")
        await run(gw, cid)
        john = (await rows(gw.db, cid))[("contact", aud.ids["john"])]
        if not bounce:
            return {"status": john.status}
        report = dsn("john@example.org", john.message_id, f"soft{n}", MAILBOX_FULL)
        resp = await gw.client.post("/email/inbound", data=report, headers=secret)
        assert resp.status == 201, await resp.text()
        return await resp.json()

    assert (await campaign(1, True))["suppressed"] is None
    assert (await campaign(2, False))["status"] == "sent"  # delivered: the count starts again
    assert (await campaign(3, True))["suppressed"] is None
    assert (await campaign(4, True))["suppressed"] is None
    assert (await campaign(5, True))["suppressed"] == "john@example.org"
    async with gw.db.session() as s:
        suppression = await s.get(EmailSuppression, "john@example.org")
    assert suppression is not None and suppression.reason == "soft_bounces"
    cid = await email_campaign(gw.db, aud, name="Offer 6")
    await run(gw, cid)
    assert (await rows(gw.db, cid))[("contact", aud.ids["john"])].skip_reason == "suppressed"
