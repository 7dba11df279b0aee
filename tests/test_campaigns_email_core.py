"""The pure parts of e-mail campaigns: signed links, templates (fa/en, RTL-safe HTML, tracked
links), the message as sent, the throttle on a virtual clock, recipient planning and the
parsing of bounces, auto-replies and replies."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import itertools

import pytest

from crm.campaigns.email import inbound, template
from crm.campaigns.email.mime import build_message, new_message_id
from crm.campaigns.email.sender import plan_recipient
from crm.campaigns.email.throttle import Throttle
from crm.campaigns.email.tokens import (
    BadToken,
    Signer,
    parse_click,
    parse_open,
    parse_unsubscribe,
)


class Tpl:
    def __init__(self, **kw):
        self.default_language = kw.pop("default_language", "fa")
        self.subject_fa = kw.pop("subject_fa", "")
        self.subject_en = kw.pop("subject_en", "")
        self.html_fa = kw.pop("html_fa", "")
        self.html_en = kw.pop("html_en", "")
        self.text_fa = kw.pop("text_fa", None)
        self.text_en = kw.pop("text_en", None)
        assert not kw


BILINGUAL = Tpl(
    subject_fa="{{first_name|دوست عزیز}}، پیشنهاد نوروزی {{campaign}}",
    subject_en="{{first_name|Friend}}, our Nowruz offer",
    html_fa='<p>سلام {{full_name}}!</p><p><a href="https://shop.example/nowruz?a=1&amp;b=2">'
    'خرید</a> <a href="mailto:help@shop.example">پشتیبانی</a></p>'
    '<img alt="{{first_name}}" src="https://shop.example/logo.png">',
    html_en='<p>Hello {{full_name}}!</p><p><a href="https://shop.example/en">Shop</a></p>',
)


# -- tokens ------------------------------------------------------------------------------------


def test_signed_tokens_round_trip_and_reject_tampering_and_other_keys():
    signer = Signer("k" * 48)
    assert parse_open(signer.verify(signer.open_token(42))) == 42
    assert parse_click(signer.verify(signer.click_token(7, "https://x.example/é?q=1"))) == (
        7,
        "https://x.example/é?q=1",
    )
    assert parse_unsubscribe(signer.verify(signer.unsubscribe_token(9, "lead", 3))) == (
        9,
        "lead",
        3,
    )
    token = signer.click_token(7, "https://good.example/")
    body, mac = token.split(".")
    forged = Signer("k" * 48).sign(["c", 7, "https://evil.example/"]).split(".")[0] + "." + mac
    for bad in (forged, body + ".", "garbage", "", token[:-2] + "AA"):
        with pytest.raises(BadToken):
            signer.verify(bad)
    with pytest.raises(BadToken):
        Signer("other-key" * 6).verify(token)
    # A token of one kind is not accepted as another.
    with pytest.raises(BadToken):
        parse_click(signer.verify(signer.open_token(1)))
    with pytest.raises(BadToken):
        parse_click(signer.verify(signer.sign(["c", 1, "javascript:alert(1)"])))


# -- templates ---------------------------------------------------------------------------------


def render(tpl, lang, values, **kw):
    return template.render_email(
        tpl, lang, values, unsubscribe_url="https://gw.example/email/u/TOKEN", **kw
    )


def test_persian_message_is_rtl_with_isolated_escaped_personal_fields():
    out = render(
        BILINGUAL,
        "fa",
        {"first_name": "John <b>", "full_name": "John & Co", "campaign": "بهار"},
        pixel_url="https://gw.example/email/o/P.gif",
    )
    assert out.language == "fa"
    assert out.subject == "John <b>، پیشنهاد نوروزی بهار"
    assert '<html lang="fa" dir="rtl">' in out.html
    assert 'dir="rtl" style="direction:rtl;text-align:right' in out.html
    # A Latin name in Persian text is isolated, and escaped.
    assert "سلام <bdi>John &amp; Co</bdi>!" in out.html
    # Inside a tag the value is escaped but not wrapped.
    assert 'alt="John &lt;b&gt;"' in out.html
    # Unsubscribe footer in Persian, open pixel last before </body>.
    assert "لغو اشتراک</a>" in out.html and "https://gw.example/email/u/TOKEN" in out.html
    assert out.html.index("email/o/P.gif") > out.html.index("لغو اشتراک")
    assert out.html.rstrip().endswith("</html>")
    # The text part: readable, with the link and the unsubscribe line.
    assert "سلام John & Co!" in out.text
    assert "خرید (https://shop.example/nowruz?a=1&b=2)" in out.text
    assert out.text.rstrip().endswith("برای لغو اشتراک: https://gw.example/email/u/TOKEN")


def test_english_version_is_ltr_and_fallbacks_apply():
    out = render(BILINGUAL, "en", {"first_name": None, "full_name": "مریم احمدی"})
    assert out.subject == "Friend, our Nowruz offer"
    assert '<html lang="en" dir="ltr">' in out.html
    assert "Hello <bdi>مریم احمدی</bdi>!" in out.html
    assert "unsubscribe</a>" in out.html
    fa = render(BILINGUAL, "fa", {"full_name": "Ali"})
    assert fa.subject.startswith("دوست عزیز،")


def test_language_choice_follows_the_record_then_the_template():
    assert template.choose_language(BILINGUAL, "en") == "en"
    assert template.choose_language(BILINGUAL, "fa-IR") == "fa"
    assert template.choose_language(BILINGUAL, None) == "fa"
    assert template.choose_language(BILINGUAL, "de") == "fa"
    only_en = Tpl(subject_en="Hi", html_en="<p>Hi</p>")
    assert template.choose_language(only_en, "fa") == "en"


def test_links_are_tracked_except_mailto_and_our_own():
    seen = []

    def tracked(url):
        seen.append(url)
        return None if "/email/" in url else f"https://gw.example/email/c/{len(seen)}"

    out = render(BILINGUAL, "fa", {"full_name": "A"}, tracked=tracked)
    assert seen == ["https://shop.example/nowruz?a=1&b=2"]  # unescaped before signing
    assert 'href="https://gw.example/email/c/1"' in out.html
    assert 'href="mailto:help@shop.example"' in out.html
    assert 'href="https://gw.example/email/u/TOKEN"' in out.html  # footer not tracked


def test_template_that_places_the_unsubscribe_link_gets_no_second_footer():
    tpl = Tpl(subject_fa="s", html_fa='<p>x <a href="{{unsubscribe_url}}">لغو</a></p>')
    out = render(tpl, "fa", {})
    assert out.html.count("https://gw.example/email/u/TOKEN") == 1
    assert "لغو اشتراک</a>" not in out.html


def test_template_check_names_unknown_fields_and_unclosed_placeholders():
    errors = template.check(
        {
            "subject_fa": "{{first_name}} {{shoe_size}}",
            "html_en": "<p>{{custom.budget}} {{first_name</p>",
            "html_fa": "{{ full_name | دوست }}",
        }
    )
    assert [e["field"] for e in errors] == ["subject_fa", "html_en"]
    assert "unknown field {{shoe_size}}" in errors[0]["reason"]
    assert "not closed" in errors[1]["reason"]


def test_the_message_has_utf8_parts_our_message_id_and_one_click_unsubscribe():
    out = render(BILINGUAL, "fa", {"first_name": "علی", "full_name": "علی رضایی"})
    mid = new_message_id(3, 17, "shop.example")
    assert mid.startswith("tamas.c3.m17.") and mid.endswith("@shop.example")
    msg = build_message(
        out,
        from_address="news@shop.example",
        from_name="فروشگاه",
        to_address="ali@example.com",
        to_name="علی رضایی",
        message_id=mid,
        unsubscribe_url="https://gw.example/email/u/TOKEN",
        campaign_id=3,
    )
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == out.subject
    assert parsed["To"].addresses[0].display_name == "علی رضایی"
    assert parsed["From"].addresses[0].addr_spec == "news@shop.example"
    assert parsed["Message-ID"] == f"<{mid}>"
    assert parsed["List-Unsubscribe"] == "<https://gw.example/email/u/TOKEN>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html_part, text_part = parsed.get_body(("html",)), parsed.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html, text = html_part.get_content(), text_part.get_content()
    assert "<bdi>علی رضایی</bdi>" in html
    assert "سلام علی رضایی!" in text
    assert all(ord(c) < 128 for c in msg.as_string().split("\n\n", 1)[0])  # headers encoded


# -- throttle ----------------------------------------------------------------------------------


class VirtualClock:
    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


async def test_throttle_spaces_messages_evenly_on_a_virtual_clock():
    clock = VirtualClock()
    throttle = Throttle(120, clock=clock, sleep=clock.sleep)  # one every 0.5 s
    times = []
    for i in range(5):
        await throttle.wait()
        times.append(clock.now)
        if i == 2:
            clock.now += 3.0  # a slow SMTP transaction: no catch-up burst afterwards
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == 1000.0
    assert gaps[0] == gaps[1] == 0.5
    assert gaps[2] == 3.0 and gaps[3] == 0.5
    assert all(g >= 0.5 for g in gaps)
    with pytest.raises(ValueError):
        Throttle(0)


# -- recipients --------------------------------------------------------------------------------


def test_recipient_planning_skips_opt_outs_suppressions_missing_and_duplicate_addresses():
    seen: set[str] = set()
    suppressed = {"gone@example.com"}
    assert plan_recipient("Ali@Example.com ", False, suppressed, seen) == (
        "queued",
        None,
        "ali@example.com",
    )
    assert plan_recipient("ali@example.com", False, suppressed, seen)[1] == "duplicate_address"
    assert plan_recipient("x@example.com", True, suppressed, seen)[1] == "opted_out"
    assert plan_recipient("GONE@example.com", False, suppressed, seen)[1] == "suppressed"
    assert plan_recipient(None, False, suppressed, seen)[1] == "no_email"
    assert plan_recipient("  ", False, suppressed, seen)[1] == "no_email"


# -- inbound -----------------------------------------------------------------------------------

OUR_ID = "tamas.c1.m2.0123456789ab@shop.example"


def dsn(
    action="failed",
    status="5.1.1",
    original=OUR_ID,
    recipient="nobody@example.org",
    original_part="headers",
):
    if original_part == "headers":
        tail = (
            "Content-Type: text/rfc822-headers\n\n"
            f"From: Shop <news@shop.example>\nTo: {recipient}\nSubject: Hi\n"
            + (f"Message-ID: <{original}>\n" if original else "")
        )
    else:
        tail = (
            "Content-Type: message/rfc822\n\n"
            f"From: news@shop.example\nTo: {recipient}\nMessage-ID: <{original}>\n"
            "Subject: Hi\n\nbody\n"
        )
    return (
        "From: MAILER-DAEMON@mx.example.org\n"
        "To: bounces@shop.example\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Message-ID: <dsn-1@mx.example.org>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThe mail system could not deliver.\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.org\n\n"
        f"Final-Recipient: rfc822; {recipient}\n"
        f"Action: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address\n"
        " rejected: User unknown\n\n"
        f"--B\n{tail}\n--B--\n"
    ).encode()


def test_a_dsn_hard_bounce_names_the_recipient_status_and_original_message():
    p = inbound.parse(dsn())
    assert p.kind == "bounce" and p.hard
    assert p.original_message_id == OUR_ID
    r = p.failed_recipient
    assert r is not None and r.diagnostic is not None
    assert (r.recipient, r.action, r.status) == ("nobody@example.org", "failed", "5.1.1")
    assert "User unknown" in r.diagnostic
    p2 = inbound.parse(dsn(original_part="message"))
    assert p2.original_message_id == OUR_ID


def test_soft_failures_and_delays_are_told_apart():
    soft = inbound.parse(dsn(status="4.2.2"))
    assert soft.kind == "bounce" and not soft.hard
    delay = inbound.parse(dsn(action="delayed", status="4.4.1"))
    assert delay.kind == "delay"
    delivered = inbound.parse(dsn(action="delivered", status="2.0.0"))
    assert delivered.kind == "unknown"


def test_a_non_standard_bounce_is_recognised_by_sender_code_and_our_message_id():
    raw = (
        "From: Mail Delivery System <MAILER-DAEMON@old.example>\n"
        "Subject: failure notice\nMessage-ID: <nb-1@old.example>\n\n"
        "Sorry, we were unable to deliver your message to <x@old.example>.\n"
        "550 5.7.1 mailbox disabled\n\n--- Below this line is a copy of the message.\n"
        f"Message-ID: <{OUR_ID}>\n"
    ).encode()
    p = inbound.parse(raw)
    assert p.kind == "bounce" and p.hard
    assert p.original_message_id == OUR_ID


def test_auto_replies_are_not_replies():
    base = "From: Ali <ali@example.com>\nMessage-ID: <r1@example.com>\n"
    assert (
        inbound.parse(
            (base + "Auto-Submitted: auto-replied\nSubject: Re: offer\n\nAway").encode()
        ).kind
        == "auto_reply"
    )
    assert (
        inbound.parse(
            (base + "Subject: =?utf-8?b?2b7Yp9iz2K4g2K7ZiNiv2qnYp9ix?=\n\nدر سفرم").encode()
        ).kind
        == "auto_reply"
    )  # "پاسخ خودکار"
    assert (
        inbound.parse((base + "Auto-Submitted: no\nSubject: Re: offer\n\nYes please").encode()).kind
        == "reply"
    )


def test_a_reply_names_our_message_in_its_references_and_keeps_its_text():
    raw = (
        "From: =?utf-8?b?2LnZhNuM?= <Ali@Example.com>\n"
        "Subject: Re: offer\n"
        f"In-Reply-To: <{OUR_ID}>\nReferences: <older@x> <{OUR_ID}>\n"
        "Message-ID: <reply-1@example.com>\nDate: Sun, 01 Mar 2026 10:00:00 +0330\n"
        'Content-Type: text/html; charset="utf-8"\n\n<p>بله، <b>علاقه‌مندم</b></p>'
    ).encode()
    p = inbound.parse(raw)
    assert p.kind == "reply"
    assert p.from_address == "ali@example.com"
    assert p.references == (OUR_ID, "older@x")
    assert p.text == "بله، علاقه‌مندم"
    assert p.date is not None and p.date.utcoffset() == dt.timedelta(hours=3.5)


def test_garbage_never_raises():
    for raw in (b"", b"\xff\xfe\x00garbage", b"Subject: =?bad?q?x?=\n\n", b"From: <<<\n\n"):
        assert inbound.parse(raw).kind in ("reply", "unknown", "bounce", "auto_reply")
